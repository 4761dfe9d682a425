// Shard sets whose tokens say where they come from, and helpers that run W in-process ranks.
#pragma once

#include "data/reader/token_shard_reader.h"
#include "tests/data/shard_fixtures.h"

#include <memory>
#include <vector>

namespace ftune::test {

// Token id of position p of document d: unique, so a test can tell every token's origin.
constexpr int64_t kCodeStride = 1024;  // > any document length used with coded sets
constexpr int64_t kCodedVocab = 1 << 20;
inline int32_t code(int64_t d, int64_t p) { return static_cast<int32_t>(d * kCodeStride + p + 1); }
inline int64_t code_doc(int32_t id) { return (id - 1) / kCodeStride; }
inline int64_t code_pos(int32_t id) { return (id - 1) % kCodeStride; }
// Documents d % 3 == 0 hide their first quarter from the loss (a prompt).
inline bool coded_mask(int64_t d, int64_t p, int64_t len) { return !(d % 3 == 0 && p < len / 4); }

struct CodedSet {
  std::vector<int64_t> lengths;  // [documents]
  std::shared_ptr<const data::ShardSet> set;
};

inline CodedSet make_coded_set(const std::string& dir, int n_docs, int max_len, uint32_t seed,
                               int64_t tokens_per_shard = 3000) {
  std::mt19937 rng(seed);
  std::vector<Doc> docs(n_docs);
  CodedSet out;
  for (int d = 0; d < n_docs; ++d) {
    int len = 1 + static_cast<int>(rng() % static_cast<uint32_t>(max_len));
    for (int p = 0; p < len; ++p) {
      docs[d].ids.push_back(code(d, p));
      docs[d].mask.push_back(coded_mask(d, p, len) ? 1 : 0);
    }
    out.lengths.push_back(len);
  }
  write_set(dir, docs, test_info(kCodedVocab, true), tokens_per_shard);
  out.set = data::ShardSet::open(dir, std::string("h-test"));
  return out;
}

// One row of a global batch, as all ranks together see it.
struct Row {
  int64_t sample = 0;
  std::vector<int32_t> ids, labels, positions;
  bool operator==(const Row& o) const {
    return sample == o.sample && ids == o.ids && labels == o.labels && positions == o.positions;
  }
};

inline std::vector<Row> rows_of(const data::Batch& b) {
  std::vector<Row> rows;
  for (int64_t r = 0; r < b.rows; ++r) {
    auto at = [&](const std::vector<int32_t>& v) {
      return std::vector<int32_t>(v.begin() + r * b.seq_len, v.begin() + (r + 1) * b.seq_len);
    };
    rows.push_back({b.sample_ids[static_cast<size_t>(r)], at(b.input_ids), at(b.labels), at(b.position_ids)});
  }
  return rows;
}

// W in-process ranks reading `steps` global batches from `start`; returns each global batch as
// the rows of rank 0, then rank 1, ... (what the union of the ranks trains on).
inline std::vector<std::vector<Row>> run_ranks(const CodedSet& cs, const data::ReaderConfig& cfg, int world,
                                               int steps, data::ReaderState start = {},
                                               data::ReaderState* end_state = nullptr) {
  std::vector<std::unique_ptr<data::TokenShardReader>> readers;
  for (int r = 0; r < world; ++r) {
    readers.push_back(std::make_unique<data::TokenShardReader>(cs.set, cfg, data::Split::train, r, world, start));
  }
  std::vector<std::vector<Row>> global(static_cast<size_t>(steps));
  for (int s = 0; s < steps; ++s) {
    for (auto& reader : readers) {
      auto rows = rows_of(reader->next());
      global[static_cast<size_t>(s)].insert(global[static_cast<size_t>(s)].end(), rows.begin(), rows.end());
    }
  }
  if (end_state) *end_state = readers.front()->state();
  for (auto& reader : readers) {
    if (end_state && !(reader->state() == *end_state)) throw std::runtime_error("ranks disagree on the state");
  }
  return global;
}

}  // namespace ftune::test
