// Builds the batch for a reader state, synchronously and as a pure function of (set, config,
// split, rank, world size, state). The prefetching TokenShardReader runs this on its thread.
#pragma once

#include "data/reader/batch.h"
#include "data/reader/epoch_plan.h"

#include <memory>

namespace ftune::data {

class BatchMaker {
 public:
  BatchMaker(std::shared_ptr<const ShardSet> set, ReaderConfig cfg, Split split, int rank, int world_size);

  // The batch starting at `state`; a cursor past the epoch's last full batch moves on to the
  // next epoch. Throws ftune::Error when an epoch holds fewer samples than one global batch.
  Batch make(ReaderState state);
  // Samples and full global batches in epoch `epoch`.
  int64_t samples_in_epoch(int64_t epoch);
  const EpochPlan& plan(int64_t epoch);

 private:
  void fill_concat_row(const EpochPlan& plan, int64_t sample, int64_t row, Batch& b);
  void fill_pack_row(const EpochPlan& plan, int64_t sample, int64_t row, Batch& b);
  void read_piece(int64_t doc, int64_t start, int64_t count, int32_t* tok, uint8_t* mask);
  void check_enough(const EpochPlan& plan) const;

  std::shared_ptr<const ShardSet> set_;
  ReaderConfig cfg_;
  Split split_;
  int rank_, world_;
  std::vector<int64_t> docs_;  // global documents of this split
  std::unique_ptr<EpochPlan> plan_;  // the most recent epoch's plan
  std::vector<int32_t> tok_;   // [seq_len + 1] scratch
  std::vector<uint8_t> mask_;  // [seq_len + 1] scratch
  std::vector<uint8_t> starts_doc_;  // [seq_len + 1] scratch: a document starts here
};

}  // namespace ftune::data
