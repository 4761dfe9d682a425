#include "data/pipeline/item_pipeline.h"

#include <sched.h>

#include <algorithm>

#include "data/pipeline/input.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::data {
namespace {

constexpr size_t kBatchRecords = 256;       // records per batch: enough work to amortise the queue
constexpr size_t kBatchBytes = 1 << 20;     // [bytes] ... or this much text
constexpr int64_t kInFlightPerThread = 4;   // batches read ahead of the writer, per encoder

}  // namespace

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ItemPipeline::ItemPipeline(const TokenizeConfig& cfg, const std::vector<InputFile>& inputs,
                           std::vector<WorkItem> items, std::shared_ptr<const Tokenizer> tok)
    : cfg_(cfg),
      inputs_(inputs),
      items_(std::move(items)),
      renderer_(cfg, ChatTokens{tok->bos_token(), tok->eos_token(), tok->chat_template()}),
      encoder_(tok, cfg) {
  n_encoders_ = cfg.threads > 0 ? static_cast<int>(cfg.threads) : usable_cores();
}

ItemPipeline::~ItemPipeline() { stop(); }

void ItemPipeline::start() {
  threads_.emplace_back([this] { read_all(); });
  for (int i = 0; i < n_encoders_; ++i) threads_.emplace_back([this] { encode_loop(); });
}

bool ItemPipeline::next(ItemResult& out, std::chrono::milliseconds poll, bool& timed_out) {
  std::unique_lock<std::mutex> lk(m_);
  timed_out = false;
  auto ready = [&] { return done_.count(written_) > 0 || (reader_done_ && written_ == total_batches_); };
  if (!cv_done_.wait_for(lk, poll, ready)) {
    timed_out = true;
    return true;
  }
  if (reader_done_ && written_ == total_batches_) return false;
  auto it = done_.find(written_);
  out = std::move(it->second);
  done_.erase(it);
  ++written_;
  cv_space_.notify_all();
  return true;
}

void ItemPipeline::stop() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
  }
  cv_work_.notify_all();
  cv_space_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

// Queues a batch once fewer than the in-flight limit wait for the caller; false on stop.
bool ItemPipeline::push(Batch&& b) {
  std::unique_lock<std::mutex> lk(m_);
  cv_space_.wait(lk, [&] { return stop_ || b.seq - written_ < kInFlightPerThread * n_encoders_; });
  if (stop_) return false;
  work_.push_back(std::move(b));
  cv_work_.notify_one();
  return true;
}

void ItemPipeline::read_all() {
  int64_t seq = 0;
  for (size_t i = 0; i < items_.size(); ++i) {
    try {
      if (!read_item(i, seq)) return;
    } catch (const std::exception& e) {
      Batch b;
      b.item = i;
      b.fatal = e.what();
      b.seq = seq++;
      push(std::move(b));
      break;
    }
  }
  std::lock_guard<std::mutex> lk(m_);
  reader_done_ = true;
  total_batches_ = seq;
  cv_work_.notify_all();
  cv_done_.notify_all();
}

bool ItemPipeline::read_item(size_t i, int64_t& seq) {
  const WorkItem& w = items_[i];
  const std::string& path = inputs_[static_cast<size_t>(w.file)].path;
  const InputKind kind = input_kind_of(path);
  LineReader reader = w.whole() ? LineReader(path) : LineReader(path, w.range);
  Batch b;
  b.item = i;
  size_t bytes = 0;
  auto flush = [&](bool end) {
    b.seq = seq++;
    b.bytes_done = reader.file_bytes_read();
    b.item_end = end;
    b.lines = reader.line_number();
    bool ok = push(std::move(b));
    b = Batch{};
    b.item = i;
    bytes = 0;
    return ok;
  };
  if (kind == InputKind::kText && cfg_.txt_mode == "file") {
    b.records.push_back({0, reader.read_all()});
    return flush(true);
  }
  for (std::string line; reader.next(line);) {
    if (line.find_first_not_of(" \t\r\f\v") == std::string::npos) continue;  // blank: a separator
    bytes += line.size();
    b.records.push_back({reader.line_number(), std::move(line)});
    if ((b.records.size() >= kBatchRecords || bytes >= kBatchBytes) && !flush(false)) return false;
  }
  return flush(true);
}

void ItemPipeline::encode_loop() {
  while (true) {
    Batch b;
    {
      std::unique_lock<std::mutex> lk(m_);
      cv_work_.wait(lk, [&] { return stop_ || !work_.empty() || reader_done_; });
      if (stop_ || work_.empty()) return;
      b = std::move(work_.front());
      work_.pop_front();
    }
    ItemResult r;
    r.item = items_[b.item].index;
    r.bytes_done = b.bytes_done;
    r.item_end = b.item_end;
    r.lines = b.lines;
    r.fatal = std::move(b.fatal);
    try {
      process(b, r);
    } catch (const std::exception& e) {
      r.fatal = inputs_[static_cast<size_t>(items_[b.item].file)].path + ": " + e.what();
    }
    std::lock_guard<std::mutex> lk(m_);
    done_[b.seq] = std::move(r);
    cv_done_.notify_all();
  }
}

void ItemPipeline::process(const Batch& b, ItemResult& r) const {
  const InputKind kind = input_kind_of(inputs_[static_cast<size_t>(items_[b.item].file)].path);
  RenderedDocument doc;
  r.outcomes.resize(b.records.size());
  for (size_t i = 0; i < b.records.size(); ++i) {
    Outcome& o = r.outcomes[i];
    o.line = b.records[i].line;
    o.ok = renderer_.render(b.records[i].text, kind, doc, o.bad) && encoder_.encode(doc, o.doc, o.bad);
  }
}

}  // namespace ftune::data
