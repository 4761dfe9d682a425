// safetensors files and HF checkpoints that are valid: round trips, layout rules, slices,
// sharding. The broken-input cases are in test_safetensors_errors.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/safetensors.h"
#include "tests/runtime/st_test_util.h"

namespace ftune::st {
namespace {

using ftune::test::read_file;
using ftune::test::TempDir;

std::vector<uint8_t> bytes_of(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  return {f.data(*t), f.data(*t) + t->nbytes()};
}

template <class T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// rchar from /proc/self/io: bytes this process passed through read-like system calls.
uint64_t bytes_read_by_process() {
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "rchar:") return value;
  }
  return 0;
}

TEST(Safetensors, DtypeTable) {
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16, DType::I8,
                  DType::U8, DType::BOOL}) {
    EXPECT_EQ(parse_dtype(dtype_name(d)), d);
  }
}

TEST(Safetensors, RoundTripKeepsBytesShapesAndMetadata) {
  TempDir dir;
  std::vector<float> f32(6);
  std::iota(f32.begin(), f32.end(), -2.5f);
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80};  // 1, -2, inf
  std::vector<uint16_t> f16 = {0x3c00, 0x0001};
  std::vector<int64_t> i64 = {-1, 1LL << 40};
  std::vector<uint8_t> flags = {1, 0, 1};
  const std::string path = dir.file("x.safetensors");
  write_file(path,
             {{"f16", DType::F16, {2}, f16.data()}, {"w.bf16", DType::BF16, {3}, bf16.data()},
              {"f32", DType::F32, {2, 3}, f32.data()}, {"i64", DType::I64, {2}, i64.data()},
              {"mask", DType::BOOL, {3}, flags.data()}, {"empty", DType::F32, {0, 4}, nullptr},
              {"scalar", DType::F32, {}, f32.data()}},
             {{"format", "pt"}, {"step", "12"}});
  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), 7u);
  EXPECT_EQ(bytes_of(*f, "f32"), raw(f32));
  EXPECT_EQ(bytes_of(*f, "w.bf16"), raw(bf16));
  EXPECT_EQ(bytes_of(*f, "f16"), raw(f16));
  EXPECT_EQ(bytes_of(*f, "i64"), raw(i64));
  EXPECT_EQ(bytes_of(*f, "mask"), raw(flags));
  EXPECT_EQ(f->find("empty")->nbytes(), 0u);
  EXPECT_EQ(f->find("scalar")->numel(), 1);
  EXPECT_EQ(f->find("f32")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f->find("w.bf16")->dtype, DType::BF16);
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "12"}}));
  EXPECT_EQ(f->find("missing"), nullptr);
}

TEST(Safetensors, HeaderIsSpacePaddedAndTensorsAligned) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  uint8_t byte = 7;
  std::vector<uint16_t> half(3, 1);
  std::vector<double> f64(2, 0.5);
  write_file(path, {{"u8", DType::U8, {1}, &byte}, {"h", DType::BF16, {3}, half.data()}, {"d", DType::F64, {2}, f64.data()}});
  const std::string file = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = file.substr(8, n);
  const size_t json_end = header.rfind('}') + 1;
  EXPECT_EQ(header.substr(json_end), std::string(n - json_end, ' ')) << "padding must be spaces";
  EXPECT_EQ(nlohmann::json::parse(header)["d"]["data_offsets"][0], 0) << "larger elements go first";
  auto f = SafetensorsFile::open(path);
  for (const auto& t : f->tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f->data(t)) % dtype_size(t.dtype), 0u) << t.name;
  }
  // tensors() lists by data offset; the data pointers come from one mapping.
  EXPECT_EQ(f->tensors().front().name, "d");
  EXPECT_EQ(f->data(f->tensors()[1]) - f->data(f->tensors()[0]), 16);
}

TEST(Safetensors, ReadsFilesWithoutMetadataOrTensors) {
  TempDir dir;
  testing::write_raw(dir.file("e.safetensors"), "{}", "");
  auto f = SafetensorsFile::open(dir.file("e.safetensors"));
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_TRUE(f->metadata().empty());
}

TEST(Safetensors, ReadRangeCopiesTheRequestedSlice) {
  TempDir dir;
  std::vector<float> w(100);
  std::iota(w.begin(), w.end(), 0.0f);
  write_file(dir.file("w.safetensors"), {{"w", DType::F32, {10, 10}, w.data()}});
  auto f = SafetensorsFile::open(dir.file("w.safetensors"));
  std::vector<float> row(10, -1);
  f->read_range(*f->find("w"), 30 * sizeof(float), 10 * sizeof(float), row.data());
  EXPECT_EQ(row, std::vector<float>(w.begin() + 30, w.begin() + 40));
  f->read_range(*f->find("w"), 0, 0, row.data());  // empty ranges are fine
}

// The property sharded loading depends on: a rank that reads its slice reads only that slice.
// rchar counts every byte that read/pread hand to this process, so reading the whole tensor
// (or the whole file) instead of the slice would show up here.
TEST(Safetensors, ReadRangeReadsOnlyTheSliceBytes) {
  if (bytes_read_by_process() == 0) GTEST_SKIP() << "/proc/self/io is not readable here";
  TempDir dir;
  std::vector<uint8_t> big(8 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 31);
  write_file(dir.file("big.safetensors"), {{"big", DType::U8, {static_cast<int64_t>(big.size())}, big.data()}});
  auto f = SafetensorsFile::open(dir.file("big.safetensors"));
  const TensorInfo& t = *f->find("big");

  constexpr uint64_t kSlice = 4096, kOffset = 3 << 20;
  std::vector<uint8_t> slice(kSlice);
  const uint64_t before = bytes_read_by_process();
  f->read_range(t, kOffset, kSlice, slice.data());
  const uint64_t after = bytes_read_by_process();
  const uint64_t proc_io_read = 512;  // the second read of /proc/self/io itself (~100 bytes)
  EXPECT_GE(after - before, kSlice);
  EXPECT_LT(after - before, kSlice + proc_io_read) << "read_range read more than the slice";
  EXPECT_EQ(0, std::memcmp(slice.data(), big.data() + kOffset, kSlice));

  // Calibration: a 1 MiB slice moves rchar by 1 MiB, so the counter sees pread at all.
  std::vector<uint8_t> mib(1 << 20);
  const uint64_t before_mib = bytes_read_by_process();
  f->read_range(t, 0, mib.size(), mib.data());
  EXPECT_GE(bytes_read_by_process() - before_mib, mib.size());
}

TEST(Safetensors, WriteReplacesAtomicallyAndLeavesNoTemporaries) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  float a = 1, b = 2;
  write_file(path, {{"a", DType::F32, {1}, &a}});
  write_file(path, {{"b", DType::F32, {1}, &b}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->find("a"), nullptr);
  ASSERT_NE(f->find("b"), nullptr);
  // A refused write keeps the previous file intact.
  EXPECT_THROW(write_file(path, {{"c", DType::F32, {1}, nullptr}}), ftune::Error);
  EXPECT_NE(SafetensorsFile::open(path)->find("b"), nullptr);
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += e.is_regular_file();
  EXPECT_EQ(entries, 1u) << "temporary files were left behind";
}

TEST(Checkpoint, SingleFileWhenItFits) {
  TempDir dir;
  std::vector<float> w(4, 1.5f);
  write_checkpoint(dir.path(), {{"w", DType::F32, {4}, w.data()}, {"v", DType::F32, {2}, w.data()}});
  EXPECT_TRUE(std::filesystem::exists(dir.file("model.safetensors")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"v", "w"}));
  EXPECT_EQ(ck.file_of("w").metadata().at("format"), "pt");
  EXPECT_EQ(ck.info("v").shape, std::vector<int64_t>{2});
}

TEST(Checkpoint, ShardsWithIndexInHuggingFaceLayout) {
  TempDir dir;
  std::vector<uint16_t> w(1000);
  std::iota(w.begin(), w.end(), 0);
  // 2000-byte tensors under a 4500-byte limit: two per shard, the last alone.
  std::vector<TensorView> views;
  for (int i = 0; i < 5; ++i) views.push_back({"layers." + std::to_string(i) + ".w", DType::BF16, {1000}, w.data()});
  write_checkpoint(dir.path(), views, 4500);
  for (const char* name : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.file(name))) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("model.safetensors")));
  const auto index = nlohmann::json::parse(read_file(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 10000);
  EXPECT_EQ(index["weight_map"]["layers.4.w"], "model-00003-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["layers.1.w"], "model-00001-of-00003.safetensors");

  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.names().size(), 5u);
  EXPECT_TRUE(ck.contains("layers.2.w"));
  EXPECT_EQ(ck.file_of("layers.2.w").path(), dir.file("model-00002-of-00003.safetensors"));
  EXPECT_EQ(bytes_of(ck.file_of("layers.3.w"), "layers.3.w"), raw(w));
}

TEST(Checkpoint, TensorLargerThanShardLimitGetsItsOwnShard) {
  TempDir dir;
  std::vector<float> big(100), small(1);
  write_checkpoint(dir.path(), {{"small", DType::F32, {1}, small.data()}, {"big", DType::F32, {100}, big.data()}}, 64);
  const Checkpoint ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck.file_of("small").tensors().size(), 1u);
  EXPECT_EQ(ck.file_of("big").path(), dir.file("model-00002-of-00002.safetensors"));
}

TEST(Checkpoint, SingleFileExportRemovesStaleIndex) {
  TempDir dir;
  float a[2] = {1, 2};
  write_checkpoint(dir.path(), {{"a", DType::F32, {1}, a}, {"b", DType::F32, {1}, a + 1}}, 4);
  ASSERT_TRUE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  write_checkpoint(dir.path(), {{"c", DType::F32, {2}, a}});
  EXPECT_EQ(Checkpoint::open(dir.path()).names(), std::vector<std::string>{"c"});
}

TEST(Checkpoint, CreatesMissingDirectories) {
  TempDir dir;
  float a = 1;
  write_checkpoint(dir.file("export/step-10"), {{"a", DType::F32, {1}, &a}});
  EXPECT_TRUE(Checkpoint::open(dir.file("export/step-10")).contains("a"));
}

}  // namespace
}  // namespace ftune::st
