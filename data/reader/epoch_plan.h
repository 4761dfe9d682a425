// Which tokens make up each sample of one epoch. A plan depends only on the shard set, the split,
// the config and the epoch number, never on rank or world size: that is what makes the sample
// order world-size independent and lets a saved (epoch, sample) resume without replaying.
#pragma once

#include "data/reader/reader_config.h"
#include "data/shards/shard_set.h"

#include <cstdint>
#include <vector>

namespace ftune::data {

enum class Split { train, validation };

// The global documents that belong to a split: with `val_fraction` > 0 a document is held out by
// a hash of its global index alone (independent of seed and world size).
std::vector<int64_t> split_documents(const ShardSet& set, Split split, double val_fraction);
bool is_validation_document(int64_t global_doc, double val_fraction);

// splitmix64: a small, fully specified generator, so orders agree across standard libraries.
uint64_t mix64(uint64_t x);

// A piece of one document placed in a pack-mode row.
struct Segment {
  int64_t doc = 0;     // global document index
  int64_t start = 0;   // [tokens] offset within the document
  int64_t length = 0;  // [tokens]
};

struct PackStats {
  int64_t split_documents = 0;      // longer than seq_len, cut into pieces
  int64_t truncated_documents = 0;  // longer than seq_len, cut to seq_len
  int64_t dropped_tokens = 0;       // lost to truncation
  int64_t padding_tokens = 0;
};

class EpochPlan {
 public:
  EpochPlan(const ShardSet& set, const std::vector<int64_t>& docs, const ReaderConfig& cfg, int64_t epoch);

  int64_t epoch() const { return epoch_; }
  int64_t samples() const { return static_cast<int64_t>(order_.size()); }
  // The sample at position `i` of the epoch's (shuffled) order, as an unshuffled sample id.
  int64_t sample_at(int64_t i) const { return order_[static_cast<size_t>(i)]; }

  // concat mode: the documents in stream order and where each starts in the stream [tokens].
  const std::vector<int64_t>& stream_docs() const { return stream_docs_; }
  const std::vector<int64_t>& stream_starts() const { return stream_starts_; }  // [docs + 1]
  // pack mode: the segments of row `r`.
  const Segment* row_begin(int64_t r) const { return segments_.data() + row_start_[static_cast<size_t>(r)]; }
  const Segment* row_end(int64_t r) const { return segments_.data() + row_start_[static_cast<size_t>(r) + 1]; }
  const PackStats& pack_stats() const { return pack_stats_; }

 private:
  void plan_concat(const ShardSet& set, const std::vector<int64_t>& docs, int64_t seq_len);
  void plan_pack(const ShardSet& set, const std::vector<int64_t>& docs, const ReaderConfig& cfg);

  int64_t epoch_;
  std::vector<int64_t> order_;  // sample ids in epoch order
  std::vector<int64_t> stream_docs_, stream_starts_;
  std::vector<Segment> segments_;
  std::vector<int64_t> row_start_;  // [rows + 1] into segments_
  PackStats pack_stats_;
};

}  // namespace ftune::data
