// What the reader hands to the trainer: plain buffers (no tensors in data/), one row per
// sequence of this rank's share of the global batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::data {

constexpr int32_t kIgnoreLabel = -100;  // the loss skips these positions (PyTorch's ignore_index)

// Where the reader stands: the next global batch starts at position `sample` of epoch `epoch`'s
// sample order. The same value for every rank and any world size, so a checkpoint stores it
// once and a run resumes from it in O(1), also with another number of ranks.
struct ReaderState {
  int64_t epoch = 0;
  int64_t sample = 0;  // [samples] global cursor within the epoch

  std::string to_json() const;                          // {"epoch": 3, "sample": 1200}
  static ReaderState from_json(const std::string& s);  // throws ftune::Error when malformed
  bool operator==(const ReaderState& o) const { return epoch == o.epoch && sample == o.sample; }
};

struct Batch {
  int64_t rows = 0;     // this rank's sequences: global_batch / world_size
  int64_t seq_len = 0;  // [tokens]
  // Each [rows * seq_len], row-major.
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;        // next token id, or kIgnoreLabel (data/FORMAT.md, "Labels")
  std::vector<int32_t> position_ids;
  // Document boundaries over the flattened rows, as flash-attention's varlen cu_seqlens:
  // sequence k is tokens [cu_seqlens[k], cu_seqlens[k+1]); rows never share a sequence; pack
  // padding is a sequence of its own (all labels ignored).
  std::vector<int32_t> cu_seqlens;
  int32_t max_seqlen = 0;
  std::vector<int64_t> sample_ids;  // [rows] which sample of the epoch each row is
  int64_t epoch = 0;
  int64_t target_tokens = 0;  // labels that are not kIgnoreLabel
  ReaderState next_state;     // the state after this batch: resume here for the next one
};

}  // namespace ftune::data
