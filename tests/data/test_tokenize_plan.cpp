// The pieces of `ftune data tokenize` at cluster scale, without MPI: line ranges that tile a
// file at any cut, the work plan and its assignment to ranks, the manifest and its records,
// the output directory's lock and its refusals.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "common/error.h"
#include "data/pipeline/input.h"
#include "data/pipeline/manifest.h"
#include "data/pipeline/output_dir.h"
#include "data/pipeline/work_plan.h"
#include "data/shards/format.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

using test::TempDir;
using test::write_file;

std::vector<std::string> lines_of(const std::string& path, LineRange range) {
  LineReader r(path, range, 1 << 20);
  std::vector<std::string> out;
  for (std::string l; r.next(l);) out.push_back(l);
  return out;
}

std::vector<std::string> all_lines(const std::string& path) {
  LineReader r(path);
  std::vector<std::string> out;
  for (std::string l; r.next(l);) out.push_back(l);
  return out;
}

// Multi-byte characters, a CRLF, blank lines, a long line and no final newline: every cut
// point of the file, two ranges [0, c) + [c, end), gives back every line exactly once.
TEST(LineRange, TwoRangesTileTheFileAtEveryCut) {
  TempDir dir;
  const std::string text = "{\"t\": \"Ünï 漢字 🙂\"}\n\n{\"t\": \"b\"}\r\n" + std::string(300, 'x') +
                           "\n\n🙂🙂🙂\n{\"t\": \"last, no newline\"}";
  write_file(dir.file("a.jsonl"), text);
  const auto whole = all_lines(dir.file("a.jsonl"));
  ASSERT_EQ(whole.size(), 7u);
  for (uint64_t cut = 0; cut <= text.size() + 1; ++cut) {
    auto a = lines_of(dir.file("a.jsonl"), {0, cut});
    auto b = lines_of(dir.file("a.jsonl"), {cut, UINT64_MAX});
    a.insert(a.end(), b.begin(), b.end());
    ASSERT_EQ(a, whole) << "cut at byte " << cut;
  }
}

// Many small ranges: every range starts at a line start, and line numbers within a range plus
// the lines counted before it give the line in the file.
TEST(LineRange, ManyRangesAndLineNumbers) {
  TempDir dir;
  std::string text;
  for (int i = 1; i <= 40; ++i) text += "line " + std::to_string(i) + " Ü漢" + std::string(static_cast<size_t>(i % 7), 'q') + "\n";
  write_file(dir.file("a.txt"), text);
  std::vector<std::string> joined;
  for (uint64_t begin = 0; begin < text.size(); begin += 13) {
    LineReader r(dir.file("a.txt"), {begin, begin + 13});
    int64_t base = begin == 0 ? 0 : count_lines_before(dir.file("a.txt"), begin - 1) + 1;
    for (std::string l; r.next(l);) {
      EXPECT_EQ(l.rfind("line " + std::to_string(base + r.line_number()) + " ", 0), 0u) << l << " at " << begin;
      EXPECT_EQ(text.compare(r.line_offset(), l.size(), l), 0);
      joined.push_back(l);
    }
  }
  EXPECT_EQ(joined, all_lines(dir.file("a.txt")));
}

TEST(LineRange, CompressedFilesAreNotCut) {
  TempDir dir;
  write_file(dir.file("a.jsonl.gz"), "");
  EXPECT_THROW(LineReader(dir.file("a.jsonl.gz"), LineRange{10, 20}), Error);
}

TEST(WorkPlan, ItemsTileSplittableFilesAndKeepOthersWhole) {
  std::vector<InputFile> in = {{"a.jsonl", 1000, true}, {"b.jsonl.gz", 5000, false}, {"c.jsonl", 300, true},
                               {"d.jsonl", 0, true}};
  auto items = plan_items(in, 300);
  ASSERT_EQ(items.size(), 4u + 1 + 1 + 1);  // a: 0,300,600,900; b; c (== size: whole); d
  EXPECT_EQ(items[0].range.begin, 0u);
  EXPECT_EQ(items[0].range.end, 300u);
  EXPECT_EQ(items[3].range.begin, 900u);
  EXPECT_EQ(items[3].range.end, UINT64_MAX);  // the last range runs to the end of the file
  EXPECT_EQ(items[3].bytes, 100u);
  EXPECT_TRUE(items[4].whole());
  EXPECT_EQ(items[4].bytes, 5000u);
  EXPECT_TRUE(items[5].whole());
  EXPECT_TRUE(items[6].whole());
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].index, static_cast<int64_t>(i));
  EXPECT_EQ(describe_item(items[1], in), "a.jsonl bytes 300..600");
  EXPECT_EQ(describe_item(items[4], in), "b.jsonl.gz (whole file)");
}

// Every item goes to exactly one rank, each rank's list is in item order, the biggest item
// does not share a rank with the rest when that balances better, and the result is the same
// on every call.
TEST(WorkPlan, AssignmentCoversEachItemOnceAndBalancesBytes) {
  std::vector<InputFile> in = {{"big.gz", 9000, false}, {"a", 3000, true}, {"b.gz", 10, false}};
  auto items = plan_items(in, 1000);  // big, a x3, b
  std::set<int64_t> todo;
  for (const auto& w : items) todo.insert(w.index);
  for (int ranks : {1, 2, 3, 7}) {
    auto shares = assign_items(items, todo, ranks);
    ASSERT_EQ(shares.size(), static_cast<size_t>(ranks));
    std::multiset<int64_t> seen;
    for (const auto& s : shares) {
      EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
      seen.insert(s.begin(), s.end());
    }
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()), todo);
    EXPECT_EQ(seen.size(), todo.size());
    EXPECT_EQ(shares, assign_items(items, todo, ranks));
  }
  auto two = assign_items(items, todo, 2);
  EXPECT_EQ(two[0], std::vector<int64_t>{0});  // 9000 bytes alone; the 3010 others on rank 1
  todo.erase(0);                                // resumed: the big file is done
  auto resumed = assign_items(items, todo, 2);
  EXPECT_EQ(resumed[0].size() + resumed[1].size(), 4u);
}

TEST(WorkPlan, AFileListedTwiceIsRefusedNamingBothPaths) {
  TempDir dir;
  write_file(dir.file("a.jsonl"), "{}\n");
  ASSERT_EQ(symlink(dir.file("a.jsonl").c_str(), dir.file("link.jsonl").c_str()), 0);
  try {
    describe_inputs({dir.file("a.jsonl"), dir.file("link.jsonl")}, false);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("link.jsonl is listed twice (also as " + dir.file("a.jsonl")), std::string::npos) << m;
  }
  auto ok = describe_inputs({dir.file("a.jsonl")}, false);
  EXPECT_TRUE(ok[0].splittable);
  EXPECT_EQ(ok[0].bytes, 3u);
}

RunManifest sample_manifest() {
  RunManifest m;
  m.settings = {{"tokenizer_hash", "abc"}, {"format", "instruction"}, {"instruction_template", "Q: {prompt} A: {response}"}};
  m.inputs = {{"/d/a.jsonl", 1000, true}, {"/d/b.jsonl.gz", 50, false}};
  m.item_bytes = 300;
  m.items = 5;
  m.tool_version = "0.1.0";
  return m;
}

TEST(Manifest, RoundTripsAndNamesEachDifference) {
  TempDir dir;
  RunManifest m = sample_manifest();
  m.write(dir.path());
  RunManifest back = RunManifest::read(dir.path());
  EXPECT_EQ(manifest_difference(back, m), "");
  RunManifest now = m;
  now.settings[2].second = "USER: {prompt} ASSISTANT: {response}";
  now.inputs[1].bytes = 51;
  now.item_bytes = 400;
  std::string diff = manifest_difference(back, now);
  EXPECT_NE(diff.find("instruction_template: 'Q: {prompt} A: {response}' when the run began, 'USER: {prompt} "
                      "ASSISTANT: {response}' now"), std::string::npos) << diff;
  EXPECT_NE(diff.find("/d/b.jsonl.gz: 50 bytes when the run began, 51 now (modified since)"), std::string::npos) << diff;
  EXPECT_NE(diff.find("item_bytes"), std::string::npos) << diff;
  write_file(dir.file(kManifestFile), "{\"kind\": \"something else\"}");
  EXPECT_THROW(RunManifest::read(dir.path()), Error);
}

TEST(Manifest, ItemRecordsRoundTrip) {
  ItemRecord r;
  r.item = 17;
  r.file = 1;
  r.range = {300, UINT64_MAX};
  r.lines = 12;
  r.records = 10;
  r.documents = 9;
  r.tokens = 400;
  r.skipped[static_cast<size_t>(SkipReason::kMalformedJson)] = 1;
  r.shards = {{format::item_shard_file_name(17, 0), 9, 400, 20}};
  r.messages = {{3, "bad JSON [malformed_json]"}};
  ItemRecord back = ItemRecord::from_json(r.to_json(), "test");
  EXPECT_EQ(back.to_json(), r.to_json());
  EXPECT_EQ(back.range.end, UINT64_MAX);
  EXPECT_EQ(back.shards[0].file, "shard-000017-0000.h5");
  EXPECT_EQ(format::item_of_shard_file_name("shard-000017-0003.h5"), 17);
  EXPECT_EQ(format::item_of_shard_file_name("shard-00017.h5"), -1);
  EXPECT_EQ(format::item_of_shard_file_name("shard-000017-0003.h5x"), -1);
}

TEST(OutputDir, ALiveRunsLockIsRefusedNamingItAndAStaleOneTakenOver) {
  TempDir dir;
  std::ostringstream log;
  {
    OutputLock mine(dir.path(), "hostA", log);
    try {
      OutputLock other(dir.path(), "hostA", log);
      FAIL() << "no error";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("being written by another run: pid " + std::to_string(getpid()) + " on hostA"),
                std::string::npos) << m;
    }
  }
  EXPECT_NE(test::run_shell("test -e " + dir.file(kLockFile)).exit_code, 0);  // released
  write_file(dir.file(kLockFile), "{\"host\": \"hostA\", \"pid\": 999999999, \"since\": 0}\n");
  { OutputLock taken(dir.path(), "hostA", log); }
  EXPECT_NE(log.str().find("taking over the stale lock of pid 999999999 on hostA"), std::string::npos) << log.str();
  write_file(dir.file(kLockFile), "{\"host\": \"hostB\", \"pid\": 999999999, \"since\": 0}\n");
  EXPECT_THROW(OutputLock(dir.path(), "hostA", log), Error);  // another host's: cannot tell, refuse
}

TEST(OutputDir, LeftoversAreRefusedAndTheMessageNamesResume) {
  TempDir dir;
  std::ostringstream log;
  RunManifest m = sample_manifest();
  std::vector<InputFile> in = m.inputs;
  auto items = plan_items(in, m.item_bytes);
  m.items = static_cast<int64_t>(items.size());
  prepare_output(dir.path(), m, items, false, log);  // fresh: writes the manifest
  try {
    prepare_output(dir.path(), m, items, false, log);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rerun with --resume"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(prepare_output(dir.path(), m, items, true, log).done.empty());
  // A record naming a shard that is not there: the manifest does not match the shards.
  ItemRecord r;
  r.item = 1;
  r.file = 0;
  r.range = items[1].range;
  r.documents = 3;
  r.tokens = 30;
  r.shards = {{format::item_shard_file_name(1, 0), 3, 30, 0}};
  r.write(dir.path());
  try {
    prepare_output(dir.path(), m, items, true, log);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("the manifest does not match the shards: manifest/item-000001.json names "
                       "shard-000001-0000.h5, which is not there"), std::string::npos) << msg;
  }
  // A shard with no record is removed on resume; a foreign shard name is refused.
  std::remove(dir.file("manifest/item-000001.json").c_str());
  write_file(dir.file(format::item_shard_file_name(2, 0)), "");
  prepare_output(dir.path(), m, items, true, log);
  EXPECT_NE(test::run_shell("test -e " + dir.file(format::item_shard_file_name(2, 0))).exit_code, 0);
  write_file(dir.file("shard-00000.h5"), "");
  EXPECT_THROW(prepare_output(dir.path(), m, items, true, log), Error);
}

}  // namespace
}  // namespace ftune::data
