// ShardSet: reads back what the writer wrote; refuses bad sets with messages naming the shard.
#include "tests/data/shard_fixtures.h"
#include "tests/support/test_support.h"

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/shard_set.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ftune::test {
namespace {

namespace fs = std::filesystem;

// The message of the ftune::Error that `open` throws, or a failure when it does not throw.
std::string open_error(const std::string& dir, const std::optional<std::string>& hash = std::nullopt) {
  try {
    data::ShardSet::open(dir, hash);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "opened " << dir;
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

void check_round_trip(int64_t vocab, bool with_mask, int64_t per_shard) {
  TempDir tmp;
  auto docs = make_docs(11, 400, 120, vocab, with_mask);
  write_set(tmp.file("set"), docs, test_info(vocab, with_mask), per_shard);
  auto set = data::ShardSet::open(tmp.file("set"), std::string("h-test"));
  ASSERT_EQ(set->documents(), 400);
  // Backwards, so shards are reopened after the open-file cap evicted them.
  for (int64_t d = set->documents() - 1; d >= 0; --d) {
    auto ref = set->document(d);
    const auto& want = docs[static_cast<size_t>(d)];
    std::vector<int32_t> ids(static_cast<size_t>(ref.length));
    std::vector<uint8_t> mask(static_cast<size_t>(ref.length));
    set->read_tokens(ref.shard, ref.begin, ref.length, ids.data());
    set->read_mask(ref.shard, ref.begin, ref.length, mask.data());
    ASSERT_EQ(ids, want.ids) << "document " << d;
    ASSERT_EQ(mask, want.mask.empty() ? std::vector<uint8_t>(want.ids.size(), 1) : want.mask) << "document " << d;
  }
}

TEST(ShardSet, ReadsBackUint16TokensAndMask) { check_round_trip(32000, true, 5000); }
TEST(ShardSet, ReadsBackUint32TokensAcrossManyShards) { check_round_trip(128256, false, 200); }

class BadSet : public ::testing::Test {
 protected:
  void SetUp() override {
    write_set(dir(), make_docs(12, 200, 100, 1000, false), test_info(1000, false), 2000);
    ASSERT_TRUE(fs::exists(shard(1)));
  }
  std::string dir() const { return tmp_.file("set"); }
  std::string shard(int i) const { return dir() + "/" + data::format::shard_file_name(i); }
  TempDir tmp_;
};

TEST_F(BadSet, TruncatedShardIsNamed) {
  ASSERT_EQ(::truncate(shard(1).c_str(), static_cast<off_t>(fs::file_size(shard(1)) / 2)), 0);
  auto msg = open_error(dir());
  expect_contains(msg, shard(1));
  expect_contains(msg, "truncated");
}

TEST_F(BadSet, CorruptShardIsNamed) {
  std::fstream f(shard(1), std::ios::in | std::ios::out | std::ios::binary);
  f.write("this is not an HDF5 superblock", 30);
  f.close();
  expect_contains(open_error(dir()), shard(1));
}

TEST_F(BadSet, OtherTokenizerIsRefusedNamingShardAndBothHashes) {
  auto msg = open_error(dir(), std::string("h-other"));
  expect_contains(msg, shard(0));
  expect_contains(msg, "h-test");
  expect_contains(msg, "h-other");
}

TEST_F(BadSet, ShardFromAnotherTokenizersSetIsRefused) {
  std::string other = tmp_.file("other");
  write_set(other, make_docs(12, 200, 100, 1000, false), test_info(1000, false, "h-foreign"), 2000);
  fs::copy_file(other + "/" + data::format::shard_file_name(1), shard(1), fs::copy_options::overwrite_existing);
  auto msg = open_error(dir());
  expect_contains(msg, shard(1));
  expect_contains(msg, "h-foreign");
  expect_contains(msg, "h-test");
}

TEST_F(BadSet, MissingIndexSaysSo) {
  fs::remove(dir() + "/index.json");
  auto msg = open_error(dir());
  expect_contains(msg, "index.json");
  expect_contains(msg, dir());
}

TEST_F(BadSet, MissingShardIsNamed) {
  fs::remove(shard(1));
  auto msg = open_error(dir());
  expect_contains(msg, shard(1));
  expect_contains(msg, "missing");
}

// HDF5 takes flock() locks on open unless told not to; a writer (or a file system without lock
// support) would then make every rank's open fail. Opening must ignore locks.
TEST_F(BadSet, OpensWhileAnotherProcessHoldsAnExclusiveLock) {
  int fd = ::open(shard(0).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_NO_THROW(data::ShardSet::open(dir()));
  ::close(fd);
}

TEST(ShardSet, MissingDirectoryIsNamed) {
  TempDir tmp;
  expect_contains(open_error(tmp.file("nowhere")), tmp.file("nowhere"));
}

}  // namespace
}  // namespace ftune::test
