#include "data/reader/token_shard_reader.h"

#include "common/error.h"
#include "data/reader/batch_maker.h"

namespace ftune::data {

TokenShardReader::TokenShardReader(std::shared_ptr<const ShardSet> set, const ReaderConfig& cfg, Split split,
                                   int rank, int world_size, ReaderState start)
    : maker_(std::make_unique<BatchMaker>(std::move(set), cfg, split, rank, world_size)),
      capacity_(static_cast<size_t>(cfg.prefetch)),
      state_(start) {
  const EpochPlan& plan = maker_->plan(start.epoch);  // throws when too small for one batch
  samples_per_epoch_ = plan.samples();
  steps_per_epoch_ = samples_per_epoch_ / cfg.global_batch;
  pack_stats_ = plan.pack_stats();
  thread_ = std::thread([this, start] { produce(start); });
}

TokenShardReader::~TokenShardReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// The prefetch thread: batches in order, at most `capacity_` ahead of the consumer. An error
// is queued in the batch's place and ends the thread.
void TokenShardReader::produce(ReaderState from) {
  ReaderState s = from;
  while (true) {
    Item item;
    try {
      item.batch = maker_->make(s);
    } catch (...) {
      item.error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stop_ || queue_.size() < capacity_; });
    if (stop_) return;
    bool failed = item.error != nullptr;
    s = item.batch.next_state;
    queue_.push_back(std::move(item));
    lock.unlock();
    cv_.notify_all();
    if (failed) return;
  }
}

Batch TokenShardReader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
  cv_.wait(lock, [&] { return !queue_.empty(); });
  Item item = std::move(queue_.front());
  queue_.pop_front();
  if (item.error) {
    error_ = item.error;
    std::rethrow_exception(error_);
  }
  state_ = item.batch.next_state;
  lock.unlock();
  cv_.notify_all();  // room for the producer
  return std::move(item.batch);
}

ReaderState TokenShardReader::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::unique_ptr<TokenShardReader> open_reader(const ReaderConfig& cfg, Split split, int rank, int world_size,
                                              const std::optional<std::string>& expected_tokenizer_hash,
                                              ReaderState start) {
  cfg.validate(world_size);
  bool separate = split == Split::validation && !cfg.val_shards.empty();
  if (split == Split::validation && cfg.val_shards.empty() && cfg.val_fraction <= 0.0) {
    throw Error("no validation data: set data.val_fraction or data.val_shards");
  }
  auto set = ShardSet::open(separate ? cfg.val_shards : cfg.shards, expected_tokenizer_hash);
  return std::make_unique<TokenShardReader>(std::move(set), cfg, split, rank, world_size, start);
}

}  // namespace ftune::data
