// TokenShardReader: disjoint ranks, world-size independent order, exact resume, label rules.
#include "tests/data/reader_fixtures.h"
#include "tests/support/test_support.h"

#include "common/error.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <set>

#include <unistd.h>

namespace ftune::test {
namespace {

data::ReaderConfig base_config(const std::string& packing) {
  data::ReaderConfig cfg;
  cfg.seq_len = 64;
  cfg.global_batch = 12;
  cfg.packing = packing;
  cfg.seed = 42;
  cfg.prefetch = 3;
  return cfg;
}

class ReaderModes : public ::testing::TestWithParam<std::string> {};

// One epoch read by 1, 2, 3 and 4 ranks: every world size trains on the same rows in the same
// global order, and within a step no two ranks share a sample.
TEST_P(ReaderModes, OneEpochIsTheSameSetForEveryWorldSizeWithoutOverlap) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 160, 150, 1);
  auto cfg = base_config(GetParam());
  int steps = static_cast<int>(data::TokenShardReader(cs.set, cfg, data::Split::train, 0, 1).steps_per_epoch());
  ASSERT_GE(steps, 3);
  auto reference = run_ranks(cs, cfg, 1, steps);
  std::set<int64_t> reference_samples;
  for (const auto& step : reference) {
    for (const auto& row : step) EXPECT_TRUE(reference_samples.insert(row.sample).second) << "repeated sample";
  }
  for (int world : {2, 3, 4}) {
    auto global = run_ranks(cs, cfg, world, steps);
    std::set<int64_t> samples;
    for (size_t s = 0; s < global.size(); ++s) {
      ASSERT_EQ(global[s].size(), 12u);
      for (const auto& row : global[s]) {
        EXPECT_TRUE(samples.insert(row.sample).second) << "sample " << row.sample << " read twice, world " << world;
      }
      EXPECT_TRUE(global[s] == reference[s]) << "step " << s << " differs at world size " << world;
    }
    EXPECT_EQ(samples, reference_samples) << "world " << world;
  }
}

// Resuming from the state saved after any step, with the same or another world size, gives
// exactly the batches of the uninterrupted run (across an epoch boundary too).
TEST_P(ReaderModes, ResumeFromAnyStepMatchesUninterruptedRunAcrossWorldSizes) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 60, 120, 2);
  auto cfg = base_config(GetParam());
  int per_epoch = static_cast<int>(data::TokenShardReader(cs.set, cfg, data::Split::train, 0, 1).steps_per_epoch());
  const int total = per_epoch * 2 + 2;  // crosses two epoch boundaries
  // The uninterrupted run at world size 2, and the state after each step.
  std::vector<data::ReaderState> states;
  std::vector<std::vector<Row>> full;
  {
    data::TokenShardReader r0(cs.set, cfg, data::Split::train, 0, 2), r1(cs.set, cfg, data::Split::train, 1, 2);
    states.push_back(r0.state());
    for (int s = 0; s < total; ++s) {
      auto rows = rows_of(r0.next());
      auto more = rows_of(r1.next());
      rows.insert(rows.end(), more.begin(), more.end());
      full.push_back(rows);
      ASSERT_TRUE(r0.state() == r1.state());
      states.push_back(data::ReaderState::from_json(r0.state().to_json()));  // via the checkpoint form
    }
  }
  EXPECT_GE(states.back().epoch, 2);
  for (int k = 0; k < total; ++k) {
    int world = 1 + k % 4;  // 1, 2, 3, 4, 1, ...
    int remaining = std::min(3, total - k);
    auto resumed = run_ranks(cs, cfg, world, remaining, states[static_cast<size_t>(k)]);
    for (int s = 0; s < remaining; ++s) {
      EXPECT_TRUE(resumed[static_cast<size_t>(s)] == full[static_cast<size_t>(k + s)])
          << "resume at step " << k << " with world " << world << ", step " << k + s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Packing, ReaderModes, ::testing::Values("concat", "pack"));

// The label of input t is the next token of the same document when that token is a target.
void check_concat_row(const Row& row, const CodedSet& cs, bool mask_doc_boundary, bool reset_positions) {
  const auto L = static_cast<int64_t>(row.ids.size());
  int64_t doc_start = 0;
  for (int64_t t = 0; t < L; ++t) {
    int32_t id = row.ids[static_cast<size_t>(t)];
    int64_t d = code_doc(id), p = code_pos(id), len = cs.lengths[static_cast<size_t>(d)];
    if (t > 0 && p == 0) doc_start = t;
    if (t + 1 < L) {  // inputs are consecutive stream tokens: next of the doc, or a doc start
      int32_t nxt = row.ids[static_cast<size_t>(t + 1)];
      bool same_doc = code_doc(nxt) == d;
      ASSERT_TRUE(same_doc ? code_pos(nxt) == p + 1 : (code_pos(nxt) == 0 && p + 1 == len));
    }
    int32_t want;
    if (p + 1 < len) {
      want = coded_mask(d, p + 1, len) ? code(d, p + 1) : data::kIgnoreLabel;
    } else if (mask_doc_boundary || t + 1 >= L) {
      want = data::kIgnoreLabel;  // next token is another document's (or beyond the row: checked above)
    } else {
      int32_t nxt = row.ids[static_cast<size_t>(t + 1)];
      want = coded_mask(code_doc(nxt), 0, cs.lengths[static_cast<size_t>(code_doc(nxt))]) ? nxt : data::kIgnoreLabel;
    }
    if (!(p + 1 == len && !mask_doc_boundary && t + 1 >= L)) {
      ASSERT_EQ(row.labels[static_cast<size_t>(t)], want) << "t=" << t << " doc " << d << " pos " << p;
    }
    ASSERT_EQ(row.positions[static_cast<size_t>(t)], reset_positions ? t - doc_start : t);
  }
}

TEST(ReaderLabels, ConcatFollowsLossMaskAndDocumentBoundaries) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 120, 100, 3);
  for (bool boundary : {true, false}) {
    auto cfg = base_config("concat");
    cfg.mask_doc_boundary = boundary;
    cfg.reset_position_ids = boundary;
    for (const auto& step : run_ranks(cs, cfg, 3, 5)) {
      for (const auto& row : step) check_concat_row(row, cs, boundary, boundary);
    }
  }
}

// Pack rows: whole documents (when they fit), labels inside each, padding ignored.
void check_pack_batch(const data::Batch& b, const CodedSet& cs, const data::ReaderConfig& cfg,
                      std::map<int64_t, int64_t>& seen_tokens) {
  const int64_t L = b.seq_len;
  for (size_t k = 0; k + 1 < b.cu_seqlens.size(); ++k) {
    int64_t begin = b.cu_seqlens[k], end = b.cu_seqlens[k + 1];
    ASSERT_EQ(begin / L, (end - 1) / L) << "a sequence spans two rows";
    int32_t first = b.input_ids[static_cast<size_t>(begin)];
    bool padding = first == cfg.pad_id;  // coded ids are never 0
    for (int64_t i = begin; i < end; ++i) {
      auto ui = static_cast<size_t>(i);
      ASSERT_EQ(b.position_ids[ui], i - begin);
      if (padding) {
        ASSERT_EQ(b.input_ids[ui], cfg.pad_id);
        ASSERT_EQ(b.labels[ui], data::kIgnoreLabel);
        continue;
      }
      int64_t d = code_doc(first), len = cs.lengths[static_cast<size_t>(d)];
      int64_t p = code_pos(first) + (i - begin);
      ASSERT_EQ(b.input_ids[ui], code(d, p));
      int32_t want = (i + 1 < end && coded_mask(d, p + 1, len)) ? code(d, p + 1) : data::kIgnoreLabel;
      ASSERT_EQ(b.labels[ui], want);
    }
    if (padding) {
      ASSERT_EQ(end % L, 0) << "padding only at the end of a row";
      continue;
    }
    int64_t d = code_doc(first), len = cs.lengths[static_cast<size_t>(d)];
    if (len <= L) {
      ASSERT_EQ(code_pos(first), 0) << "document " << d << " fits but was split";
      ASSERT_EQ(end - begin, len) << "document " << d << " fits but was split";
    } else if (cfg.long_docs == "truncate") {
      ASSERT_EQ(end - begin, L);
      ASSERT_EQ(code_pos(first), 0);
    }
    seen_tokens[d] += end - begin;
  }
}

TEST(ReaderLabels, PackNeverSplitsADocumentThatFitsAndPadsWithIgnoredLabels) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 150, 90, 4);  // some documents longer than 64
  for (const char* long_docs : {"split", "truncate"}) {
    auto cfg = base_config("pack");
    cfg.long_docs = long_docs;
    data::TokenShardReader reader(cs.set, cfg, data::Split::train, 0, 1);
    int64_t longer = 0;
    for (auto len : cs.lengths) longer += len > cfg.seq_len;
    ASSERT_GT(longer, 0);
    if (cfg.long_docs == "split") EXPECT_EQ(reader.pack_stats().split_documents, longer);
    else EXPECT_EQ(reader.pack_stats().truncated_documents, longer);
    std::map<int64_t, int64_t> seen;
    for (int64_t s = 0; s < reader.steps_per_epoch(); ++s) check_pack_batch(reader.next(), cs, cfg, seen);
    for (const auto& [doc, n] : seen) {  // every document at most once per epoch
      int64_t len = cs.lengths[static_cast<size_t>(doc)];
      EXPECT_LE(n, cfg.long_docs == "split" ? len : std::min(len, cfg.seq_len)) << "document " << doc;
    }
  }
}

TEST(ReaderLabels, EmptyDocumentsAreSkippedInBothModes) {
  TempDir tmp;
  std::vector<Doc> docs(60);
  for (int d = 0; d < 60; ++d) {
    for (int p = 0; d % 2 == 0 && p < 40; ++p) docs[static_cast<size_t>(d)].ids.push_back(code(d, p));
  }
  write_set(tmp.file("set"), docs, test_info(kCodedVocab, false), 500);
  auto set = data::ShardSet::open(tmp.file("set"));
  for (const char* packing : {"concat", "pack"}) {
    auto cfg = base_config(packing);
    cfg.seq_len = 16;
    cfg.global_batch = 4;
    data::TokenShardReader reader(set, cfg, data::Split::train, 0, 1);
    for (int64_t s = 0; s < reader.steps_per_epoch(); ++s) {
      for (int32_t id : reader.next().input_ids) {
        if (id != cfg.pad_id) ASSERT_EQ(code_doc(id) % 2, 0) << packing;
      }
    }
  }
}

TEST(ReaderSplit, ValidationByFractionIsDisjointDeterministicAndByDocument) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 400, 30, 5);
  auto train = data::split_documents(*cs.set, data::Split::train, 0.2);
  auto val = data::split_documents(*cs.set, data::Split::validation, 0.2);
  EXPECT_EQ(train.size() + val.size(), 400u);
  std::set<int64_t> all(train.begin(), train.end());
  for (auto d : val) EXPECT_TRUE(all.insert(d).second) << "document " << d << " in both splits";
  EXPECT_NEAR(static_cast<double>(val.size()) / 400.0, 0.2, 0.06);
  EXPECT_EQ(val, data::split_documents(*cs.set, data::Split::validation, 0.2));
  // A validation reader only sees held-out documents.
  auto cfg = base_config("concat");
  cfg.val_fraction = 0.2;
  cfg.global_batch = 2;
  cfg.seq_len = 16;
  std::set<int64_t> val_set(val.begin(), val.end());
  data::TokenShardReader reader(cs.set, cfg, data::Split::validation, 0, 1);
  for (int s = 0; s < 5; ++s) {
    for (int32_t id : reader.next().input_ids) EXPECT_TRUE(val_set.count(code_doc(id))) << "doc " << code_doc(id);
  }
}

TEST(ReaderSplit, SeparateValidationFilesAndOpenReaderChecks) {
  TempDir tmp;
  auto train = make_coded_set(tmp.file("train"), 50, 40, 8);
  auto val = make_coded_set(tmp.file("val"), 30, 40, 9);
  auto cfg = base_config("concat");
  cfg.shards = tmp.file("train");
  cfg.global_batch = 2;
  EXPECT_THROW(data::open_reader(cfg, data::Split::validation, 0, 1, std::string("h-test")), Error);
  cfg.val_shards = tmp.file("val");
  auto reader = data::open_reader(cfg, data::Split::validation, 0, 1, std::string("h-test"));
  EXPECT_EQ(reader->samples_per_epoch(), std::accumulate(val.lengths.begin(), val.lengths.end(), int64_t{0}) / cfg.seq_len);
  try {
    data::open_reader(cfg, data::Split::train, 0, 1, std::string("h-other"));
    FAIL() << "opened shards of another tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h-other"), std::string::npos) << e.what();
  }
}

TEST(ReaderLifecycle, DestroyingWithAFullQueueOrMidStreamStopsCleanly) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 100, 60, 10);
  auto cfg = base_config("pack");
  cfg.prefetch = 1;
  { data::TokenShardReader idle(cs.set, cfg, data::Split::train, 0, 2); }
  data::TokenShardReader reader(cs.set, cfg, data::Split::train, 1, 2);
  auto first = reader.next();
  EXPECT_EQ(first.rows, 6);
  EXPECT_TRUE(reader.state() == first.next_state);
}

TEST(ReaderErrors, PrefetchErrorsReachTheConsumerNamingTheShard) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 200, 100, 6);
  auto cfg = base_config("concat");
  // Damage every shard after the set was opened: the prefetch thread hits it on its first read.
  for (int64_t s = 0; s < cs.set->shard_count(); ++s) {
    ASSERT_EQ(::truncate(cs.set->shard(s).path.c_str(), 4096), 0);
  }
  data::TokenShardReader reader(cs.set, cfg, data::Split::train, 0, 1);
  for (int attempt = 0; attempt < 2; ++attempt) {  // and it stays failed
    try {
      reader.next();
      FAIL() << "read a truncated shard";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("shard-0000"), std::string::npos) << e.what();
    }
  }
}

TEST(ReaderConfig, GlobalBatchMustDivideOverRanksAndSetMustHoldOneBatch) {
  TempDir tmp;
  auto cs = make_coded_set(tmp.file("set"), 20, 10, 7);
  auto cfg = base_config("concat");
  cfg.global_batch = 10;
  try {
    data::TokenShardReader reader(cs.set, cfg, data::Split::train, 0, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.global_batch"), std::string::npos) << e.what();
  }
  cfg.global_batch = 1000;
  try {
    data::TokenShardReader reader(cs.set, cfg, data::Split::train, 0, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one global batch"), std::string::npos) << e.what();
  }
}

TEST(ReaderState, JsonRoundTripAndMalformedInput) {
  data::ReaderState s{3, 1200};
  EXPECT_TRUE(data::ReaderState::from_json(s.to_json()) == s);
  EXPECT_THROW(data::ReaderState::from_json("{\"epoch\": 1}"), Error);
  EXPECT_THROW(data::ReaderState::from_json("not json"), Error);
}

}  // namespace
}  // namespace ftune::test
