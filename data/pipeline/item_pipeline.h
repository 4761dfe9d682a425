// The threads of one rank of `ftune data tokenize`: a reader thread cuts this rank's work
// items into numbered batches of records, N encoder threads render and tokenize them, and the
// caller takes the results back in batch order -- so what a rank writes is identical for any
// number of encoder threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/pipeline/encode.h"
#include "data/pipeline/render.h"
#include "data/pipeline/work_plan.h"

namespace ftune::data {

class Tokenizer;

struct Outcome {
  int64_t line = 0;  // 1-based within the item; 0 for a whole-file document
  bool ok = false;
  EncodedDocument doc;
  BadRecord bad;
};

struct ItemResult {
  int64_t item = -1;  // index into the plan
  std::vector<Outcome> outcomes;
  uint64_t bytes_done = 0;  // [bytes on disk] of the item read when the batch was cut
  bool item_end = false;    // the item's last batch
  int64_t lines = 0;        // with item_end: lines starting in the item's range
  std::string fatal;        // the item cannot be read: the rank stops here
};

class ItemPipeline {
 public:
  // `items` are this rank's, in order; inputs and items must outlive the pipeline.
  ItemPipeline(const TokenizeConfig& cfg, const std::vector<InputFile>& inputs, std::vector<WorkItem> items,
               std::shared_ptr<const Tokenizer> tok);
  ~ItemPipeline();

  int encoders() const { return n_encoders_; }
  void start();
  // The next result in batch order; false when every batch was handed out. Returns at least
  // every `poll` (timed_out set) so the caller can tick, draw progress and notice signals.
  bool next(ItemResult& out, std::chrono::milliseconds poll, bool& timed_out);
  void stop();  // idempotent; on success, error and interrupt

 private:
  struct Record {
    int64_t line;
    std::string text;
  };
  struct Batch {
    int64_t seq = 0;
    size_t item = 0;  // into items_
    std::vector<Record> records;
    uint64_t bytes_done = 0;
    bool item_end = false;
    int64_t lines = 0;
    std::string fatal;
  };

  bool push(Batch&& b);
  void read_all();
  bool read_item(size_t i, int64_t& seq);
  void encode_loop();
  void process(const Batch& b, ItemResult& r) const;

  const TokenizeConfig& cfg_;
  const std::vector<InputFile>& inputs_;
  std::vector<WorkItem> items_;
  DocumentRenderer renderer_;
  DocumentEncoder encoder_;
  int n_encoders_ = 1;

  std::mutex m_;
  std::condition_variable cv_work_, cv_space_, cv_done_;
  std::deque<Batch> work_;
  std::map<int64_t, ItemResult> done_;  // finished batches waiting for their turn
  int64_t written_ = 0;                 // batches handed to the caller
  int64_t total_batches_ = 0;           // valid once reader_done_
  bool reader_done_ = false;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Cores this process may run on (its affinity mask: mpirun's or Slurm's binding counts).
int usable_cores();

}  // namespace ftune::data
