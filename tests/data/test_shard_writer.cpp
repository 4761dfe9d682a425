// ShardSetWriter: atomicity and input validation (the layout is checked by h5py in
// test_shard_layout_oracle.cpp).
#include "tests/data/shard_fixtures.h"
#include "tests/support/test_support.h"

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/shard_set.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <unistd.h>

namespace ftune::test {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> dir_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ShardWriter, InterruptedWriterKeepsFinishedShardsAndLeavesNoTemporaries) {
  TempDir tmp;
  std::string dir = tmp.file("set");
  auto docs = make_docs(9, 100, 100, 1000, false);
  {
    data::ShardSetWriter w(dir, test_info(1000, false), 500);
    for (const auto& d : docs) w.add_document(d.ids.data(), d.ids.size(), nullptr);
    // destroyed without finish(): the open shard is dropped
  }
  auto names = dir_names(dir);
  ASSERT_FALSE(names.empty());
  for (const auto& n : names) {
    EXPECT_TRUE(data::format::is_shard_file_name(n)) << n;  // no temporaries left behind
    EXPECT_NE(n, "index.json");  // an unfinished set has no index
  }
}

TEST(ShardWriter, SameDocumentsGiveByteIdenticalShards) {
  TempDir tmp;
  auto docs = make_docs(9, 100, 100, 1000, true);
  for (const char* name : {"a", "b"}) {
    data::ShardSetWriter w(tmp.file(name), test_info(1000, true), 500);
    for (const auto& d : docs) w.add_document(d.ids.data(), d.ids.size(), d.mask.data());
    w.finish();
    if (name[0] == 'a') sleep(1);  // a timestamp in the file would now differ
  }
  auto names = dir_names(tmp.file("a"));
  ASSERT_EQ(names, dir_names(tmp.file("b")));
  ASSERT_GT(names.size(), 2u);
  for (const auto& n : names)
    EXPECT_EQ(read_file(tmp.file("a") + "/" + n), read_file(tmp.file("b") + "/" + n)) << n;
}

TEST(ShardWriter, RejectsIdsOutsideVocabularyAndBadMask) {
  TempDir tmp;
  data::ShardSetWriter w(tmp.file("set"), test_info(100, true), 1000);
  std::vector<int32_t> ids = {1, 2, 100};
  try {
    w.add_document(ids.data(), ids.size(), nullptr);
    FAIL() << "accepted id 100 with vocab 100";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
  ids = {1, 2, 3};
  std::vector<uint8_t> mask = {0, 1, 2};
  EXPECT_THROW(w.add_document(ids.data(), ids.size(), mask.data()), Error);
}

TEST(ShardWriter, EmptySourceListAndNoBosEosRoundTrip) {
  TempDir tmp;
  auto info = test_info(100, false);
  info.source_files.clear();
  info.bos_id = info.eos_id = -1;
  write_set(tmp.file("set"), make_docs(2, 5, 10, 100, false), info, 100);
  auto set = data::ShardSet::open(tmp.file("set"), std::string("h-test"));
  EXPECT_TRUE(set->shard(0).source_files.empty());
  EXPECT_EQ(set->shard(0).bos_id, -1);
}

TEST(ShardWriter, RefusesDirectoryHoldingASet) {
  TempDir tmp;
  auto docs = make_docs(1, 5, 10, 100, false);
  write_set(tmp.file("set"), docs, test_info(100, false), 100);
  try {
    data::ShardSetWriter w(tmp.file("set"), test_info(100, false), 100);
    FAIL() << "wrote into a directory that holds a set";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a shard set"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ftune::test
