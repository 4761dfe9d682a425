// The streaming token reader: this rank's rows of each global batch, prepared ahead by a
// background thread. The sample order is a function of the seed and epoch only; rank r of W
// takes the r-th contiguous slice of each global batch, so ranks never overlap and the global
// sequence of batches is the same for any world size. Its whole position is a ReaderState.
//
//   auto set = data::ShardSet::open(cfg.shards, tokenizer->hash());
//   data::TokenShardReader reader(set, cfg, data::Split::train, rank, world, ckpt.reader_state);
//   data::Batch b = reader.next();           // blocks until the batch is ready
//   ckpt.reader_state = reader.state();      // after the last batch handed out
#pragma once

#include "data/reader/batch.h"
#include "data/reader/epoch_plan.h"
#include "data/reader/reader_config.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace ftune::data {

class BatchMaker;

class TokenShardReader {
 public:
  // Validates `cfg` (throws ftune::Error) and plans the first epoch before returning, so a set
  // too small for one global batch fails here rather than on the first next().
  TokenShardReader(std::shared_ptr<const ShardSet> set, const ReaderConfig& cfg, Split split, int rank,
                   int world_size, ReaderState start = {});
  ~TokenShardReader();  // stops and joins the prefetch thread
  TokenShardReader(const TokenShardReader&) = delete;
  TokenShardReader& operator=(const TokenShardReader&) = delete;

  // The next batch; rethrows, here and on every later call, an error the prefetch thread hit.
  Batch next();
  // Where the next call to next() continues; store it in checkpoints.
  ReaderState state() const;
  // Full global batches (optimizer steps) in the epoch the reader started in.
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t samples_per_epoch() const { return samples_per_epoch_; }
  const PackStats& pack_stats() const { return pack_stats_; }  // of the first epoch planned

 private:
  void produce(ReaderState from);

  struct Item {
    Batch batch;
    std::exception_ptr error;
  };
  std::unique_ptr<BatchMaker> maker_;  // used only by the prefetch thread after construction
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::exception_ptr error_;  // sticky once consumed
  ReaderState state_;         // after the last batch handed out
  int64_t steps_per_epoch_ = 0, samples_per_epoch_ = 0;
  PackStats pack_stats_;
  std::thread thread_;  // last: starts after everything above is initialised
};

// Opens the set for `split` (val_shards when set and split is validation) and checks its
// tokenizer hash when `expected_tokenizer_hash` is given.
std::unique_ptr<TokenShardReader> open_reader(const ReaderConfig& cfg, Split split, int rank, int world_size,
                                              const std::optional<std::string>& expected_tokenizer_hash,
                                              ReaderState start = {});

}  // namespace ftune::data
