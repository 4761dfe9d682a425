// `ftune data inspect` and `ftune data verify` on good and damaged sets.
#include "tests/data/shard_fixtures.h"
#include "tests/support/test_support.h"

#include "data/shards/format.h"
#include "data/tokenizer/tokenizer.h"
#include "tests/data/tiny_tokenizer.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>

namespace ftune::test {
namespace {

namespace fs = std::filesystem;

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in:\n" << text;
}

// Overwrites element `index` of a 1-D dataset in place, as a damaged or hand-edited file would.
template <class T>
void poke(const std::string& file, const char* dataset, hsize_t index, T value, hid_t mem_type) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
  hid_t fs_id = H5Dget_space(d);
  hsize_t one = 1;
  H5Sselect_hyperslab(fs_id, H5S_SELECT_SET, &index, nullptr, &one, nullptr);
  hid_t ms = H5Screate_simple(1, &one, nullptr);
  EXPECT_GE(H5Dwrite(d, mem_type, ms, fs_id, H5P_DEFAULT, &value), 0);
  H5Sclose(ms);
  H5Sclose(fs_id);
  H5Dclose(d);
  H5Fclose(f);
}

// Rewrites the int64 attribute `name` of a shard's root group, as an older writer left it.
void set_int_attr(const std::string& file, const char* name, int64_t value) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &value), 0);
  H5Aclose(a);
  H5Fclose(f);
}

class ShardCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto docs = make_docs(21, 120, 80, 100, true);
    docs[0].ids = {5, 6, 7, 8, 9, 10, 11, 12};
    docs[0].mask = {0, 0, 1, 1, 1, 1, 1, 1};
    write_set(dir(), docs, test_info(100, true), 1500);
  }
  std::string dir() const { return tmp_.file("set"); }
  std::string shard(int i) const { return dir() + "/" + data::format::shard_file_name(i); }
  ProcessResult verify() const { return run_ftune("data verify " + shell_quote(dir())); }
  TempDir tmp_;
};

TEST_F(ShardCli, InspectPrintsSummaryAndSamplesWithMaskedTokensMarked) {
  auto r = run_ftune("data inspect " + shell_quote(dir()) + " --samples 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_contains(r.output, "tokenizer hash   h-test");
  expect_contains(r.output, "documents        120");
  expect_contains(r.output, "uint16");
  expect_contains(r.output, "shard-00000.h5");
  expect_contains(r.output, "corpus/a.jsonl, corpus/b.jsonl");
  expect_contains(r.output, "[5 6] 7 8 9 10 11 12");
}

TEST_F(ShardCli, VerifyAcceptsAGoodSet) {
  auto r = verify();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_contains(r.output, ": OK");
}

TEST_F(ShardCli, VerifyNamesTruncatedShardWithoutHdf5Noise) {
  ASSERT_EQ(::truncate(shard(1).c_str(), 2048), 0);
  auto r = verify();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_contains(r.output, shard(1));
  EXPECT_EQ(r.output.find("HDF5-DIAG"), std::string::npos) << r.output;
}

TEST_F(ShardCli, VerifyFindsTokenOutsideVocabulary) {
  poke<uint32_t>(shard(0), "tokens", 3, 100, H5T_NATIVE_UINT32);
  auto r = verify();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_contains(r.output, shard(0));
  expect_contains(r.output, "token 3 has id 100");
}

TEST_F(ShardCli, VerifyFindsBadMaskValueAndNonMonotoneOffsets) {
  poke<uint8_t>(shard(0), "loss_mask", 5, 7, H5T_NATIVE_UINT8);
  poke<int64_t>(shard(1), "doc_offsets", 2, 0, H5T_NATIVE_INT64);
  auto r = verify();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_contains(r.output, "loss_mask[5] is 7");
  expect_contains(r.output, "doc_offsets decreases");
}

TEST_F(ShardCli, VerifyFindsShardMissingFromIndexAndMissingShard) {
  fs::copy_file(shard(0), dir() + "/shard-00099.h5");
  fs::remove(shard(1));
  auto r = verify();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_contains(r.output, "shard-00099.h5 is not listed in index.json");
  expect_contains(r.output, shard(1) + " is missing");
}

TEST_F(ShardCli, InspectAndVerifyWithoutIndexSayWhy) {
  fs::remove(dir() + "/index.json");
  auto r = run_ftune("data inspect " + shell_quote(dir()));
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r.output, "no index.json in " + dir());
  EXPECT_EQ(verify().exit_code, 1);
}

// The hand-written byte-level tokenizer, as dir/tokenizer.json.
std::string write_tiny_tokenizer(const std::string& dir) {
  fs::create_directories(dir);
  write_file(dir + "/tokenizer.json", data::tiny_byte_level(true).dump());
  return dir + "/tokenizer.json";
}

TEST(ShardCliText, InspectDecodesSamplesWithTheShardsTokenizer) {
  TempDir tmp;
  const std::string tok_path = write_tiny_tokenizer(tmp.file("tok"));
  auto tok = data::Tokenizer::load(tok_path);
  std::vector<Doc> docs(2);
  docs[0].ids = {5, 6, 7, 8, 9, 10, 11, 12};  // & ' ( ) * + , -
  docs[0].mask = {0, 0, 1, 1, 1, 1, 1, 1};
  docs[1].ids = tok->encode("the theme<|eot|>", false);  // no mask: all trained on
  write_set(tmp.file("set"), docs, test_info(tok->vocab_size(), true, tok->hash()), 1500);
  auto r = run_ftune("data inspect " + shell_quote(tmp.file("set")) + " --samples 2 --tokenizer " +
                     shell_quote(tmp.file("tok")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_contains(r.output, "\n  [&']()*+,-\n");  // no space added where the runs meet
  expect_contains(r.output, "\n  the theme<|eot|>\n");  // special tokens stay visible
}

TEST_F(ShardCli, InspectRefusesATokenizerWithAnotherHash) {
  const std::string tok_path = write_tiny_tokenizer(tmp_.file("tok"));
  auto r = run_ftune("data inspect " + shell_quote(dir()) + " --samples 1 --inspect.tokenizer " +
                     shell_quote(tok_path));
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r.output, "tokenizer " + tok_path + " has hash " + data::Tokenizer::load(tok_path)->hash());
  expect_contains(r.output, "was made with tokenizer hash h-test");
  EXPECT_EQ(r.output.find("[data] shard set"), std::string::npos) << "refused before the summary:\n" << r.output;
}

}  // namespace
}  // namespace ftune::test

namespace ftune::test {
namespace {

// Format version 2 changed how the data tool names and closes shards, not what a reader
// reads: a version 1 set still inspects and verifies; a version from the future is refused.
TEST_F(ShardCli, AVersion1SetStillReadsAndANewerOneIsRefused) {
  auto set_version = [&](int64_t v) {
    for (const auto& e : fs::directory_iterator(dir())) {
      if (data::format::is_shard_file_name(e.path().filename().string())) set_int_attr(e.path().string(), "format_version", v);
    }
    std::string index = read_file(dir() + "/index.json");
    auto at = index.find("\"format_version\": ");
    ASSERT_NE(at, std::string::npos) << index;
    index.replace(at, index.find(',', at) - at, "\"format_version\": " + std::to_string(v));
    write_file(dir() + "/index.json", index);
  };
  set_version(1);
  auto r = run_ftune("data verify " + shell_quote(dir()) + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_ftune("data inspect " + shell_quote(dir()) + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_contains(r.output, "format version   1");
  set_version(3);
  r = run_ftune("data verify " + shell_quote(dir()) + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r.output, "format version 3, this ftune reads 1..2");
}

}  // namespace
}  // namespace ftune::test
