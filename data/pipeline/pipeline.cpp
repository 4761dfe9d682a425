#include "data/pipeline/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/text.h"
#include "data/pipeline/encode.h"
#include "data/pipeline/input.h"
#include "data/shards/shard_writer.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::data {
namespace {

constexpr size_t kBatchRecords = 256;       // records per batch: enough work to amortise the queue
constexpr size_t kBatchBytes = 1 << 20;     // [bytes] ... or this much text
constexpr int64_t kInFlightPerThread = 4;   // batches read ahead of the writer, per encoder

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

// Installs SIGINT/SIGTERM handlers for the run and restores the previous ones after.
class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    old_int_ = std::signal(SIGINT, on_signal);
    old_term_ = std::signal(SIGTERM, on_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

struct Record {
  int64_t line;  // 1-based; 0 for a whole-file document
  std::string text;
};

struct Batch {
  int64_t seq = 0;
  size_t file = 0;
  InputKind kind = InputKind::kJsonl;
  std::vector<Record> records;
  uint64_t bytes_done = 0;  // [input bytes on disk] consumed when the batch was cut
  std::string fatal;        // a file-level error: the run stops here
};

struct Outcome {
  int64_t line;
  bool ok;
  EncodedDocument doc;
  BadRecord bad;
};

struct Result {
  size_t file = 0;
  std::vector<Outcome> outcomes;
  uint64_t bytes_done = 0;
  std::string fatal;
};

std::string format_duration(double seconds) {
  auto s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

std::string human(double x) {
  char buf[32];
  if (x >= 1e9) std::snprintf(buf, sizeof(buf), "%.2fG", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", x / 1e6);
  else if (x >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fk", x / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", x);
  return buf;
}

class Pipeline {
 public:
  Pipeline(const TokenizeConfig& cfg, std::vector<std::string> files, std::shared_ptr<const Tokenizer> tok)
      : cfg_(cfg),
        files_(std::move(files)),
        renderer_(cfg, ChatTokens{tok->bos_token(), tok->eos_token(), tok->chat_template()}),
        encoder_(tok, cfg) {
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    n_encoders_ = cfg.threads > 0 ? static_cast<int>(cfg.threads) : static_cast<int>(hw);
  }
  ~Pipeline() { stop(); }

  int encoders() const { return n_encoders_; }

  void start() {
    threads_.emplace_back([this] { read_all(); });
    for (int i = 0; i < n_encoders_; ++i) threads_.emplace_back([this] { encode_loop(); });
  }

  // The next result in batch order; false when every batch was handed out. Wakes up at least
  // every `poll` so the caller can draw progress and notice signals.
  bool next(Result& out, std::chrono::milliseconds poll, bool& timed_out) {
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

  // Stops the threads (idempotent); called on success, error and interrupt.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_work_.notify_all();
    cv_space_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  // Queues a batch once fewer than the in-flight limit wait for the writer; false on stop.
  bool push(Batch&& b) {
    std::unique_lock<std::mutex> lk(m_);
    cv_space_.wait(lk, [&] { return stop_ || b.seq - written_ < kInFlightPerThread * n_encoders_; });
    if (stop_) return false;
    work_.push_back(std::move(b));
    cv_work_.notify_one();
    return true;
  }

  void read_all() {
    int64_t seq = 0;
    uint64_t bytes_before = 0;  // [bytes] of the files already read
    for (size_t f = 0; f < files_.size(); ++f) {
      Batch b;
      b.kind = input_kind_of(files_[f]);
      b.file = f;
      try {
        if (!read_file(f, b, seq, bytes_before)) return;
      } catch (const std::exception& e) {
        b.records.clear();
        b.fatal = e.what();
        b.seq = seq++;
        push(std::move(b));
        break;
      }
      struct stat st {};
      if (stat(files_[f].c_str(), &st) == 0) bytes_before += static_cast<uint64_t>(st.st_size);
    }
    std::lock_guard<std::mutex> lk(m_);
    reader_done_ = true;
    total_batches_ = seq;
    cv_work_.notify_all();
    cv_done_.notify_all();
  }

  bool read_file(size_t f, Batch& b, int64_t& seq, uint64_t bytes_before) {
    LineReader reader(files_[f]);
    size_t bytes = 0;
    auto flush = [&] {
      b.seq = seq++;
      b.bytes_done = bytes_before + reader.file_bytes_read();
      Batch next;
      next.kind = b.kind;
      next.file = f;
      bool ok = push(std::move(b));
      b = std::move(next);
      bytes = 0;
      return ok;
    };
    if (b.kind == InputKind::kText && cfg_.txt_mode == "file") {
      b.records.push_back({0, reader.read_all()});
      return flush();
    }
    for (std::string line; reader.next(line);) {
      if (line.find_first_not_of(" \t\r\f\v") == std::string::npos) continue;  // blank: a separator
      bytes += line.size();
      b.records.push_back({reader.line_number(), std::move(line)});
      if ((b.records.size() >= kBatchRecords || bytes >= kBatchBytes) && !flush()) return false;
    }
    return b.records.empty() || flush();
  }

  void encode_loop() {
    while (true) {
      Batch b;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_work_.wait(lk, [&] { return stop_ || !work_.empty() || reader_done_; });
        if (stop_ || work_.empty()) return;
        b = std::move(work_.front());
        work_.pop_front();
      }
      Result r;
      r.file = b.file;
      r.bytes_done = b.bytes_done;
      r.fatal = std::move(b.fatal);
      try {
        process(b, r);
      } catch (const std::exception& e) {
        r.fatal = files_[b.file] + ": " + e.what();
      }
      std::lock_guard<std::mutex> lk(m_);
      done_[b.seq] = std::move(r);
      cv_done_.notify_all();
    }
  }

  void process(const Batch& b, Result& r) const {
    RenderedDocument doc;
    r.outcomes.resize(b.records.size());
    for (size_t i = 0; i < b.records.size(); ++i) {
      Outcome& o = r.outcomes[i];
      o.line = b.records[i].line;
      o.ok = renderer_.render(b.records[i].text, b.kind, doc, o.bad) && encoder_.encode(doc, o.doc, o.bad);
    }
  }

  const TokenizeConfig& cfg_;
  std::vector<std::string> files_;
  DocumentRenderer renderer_;
  DocumentEncoder encoder_;
  int n_encoders_ = 1;

  std::mutex m_;
  std::condition_variable cv_work_, cv_space_, cv_done_;
  std::deque<Batch> work_;
  std::map<int64_t, Result> done_;  // finished batches waiting for their turn
  int64_t written_ = 0;             // batches handed to the writer
  int64_t total_batches_ = 0;       // valid once reader_done_
  bool reader_done_ = false;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// The progress line on stderr: position in the input (bytes on disk), tokens/s and the ETA.
class Progress {
 public:
  Progress(bool enabled, uint64_t total_bytes) : enabled_(enabled), total_(total_bytes), start_(now()) {}
  void update(uint64_t bytes_done, int64_t tokens, bool force = false) {
    double t = now();
    if (!enabled_ || (!force && t - last_ < 0.25)) return;
    last_ = t;
    double elapsed = std::max(t - start_, 1e-9), frac = total_ ? double(bytes_done) / double(total_) : 1.0;
    std::string eta = frac > 0 ? format_duration(elapsed * (1 - frac) / frac) : "?";
    std::fprintf(stderr, "\r[data] %5.1f%% %s / %s  %s tokens  %s tok/s  ETA %s   ", 100 * frac,
                 format_bytes(double(bytes_done)).c_str(), format_bytes(double(total_)).c_str(),
                 human(double(tokens)).c_str(), human(tokens / elapsed).c_str(), eta.c_str());
    std::fflush(stderr);
  }
  void done() {
    if (enabled_) std::fprintf(stderr, "\n");
  }
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  double start() const { return start_; }

 private:
  bool enabled_;
  uint64_t total_;
  double start_, last_ = 0;
};

std::string record_place(const std::string& file, int64_t line) {
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

}  // namespace

int64_t TokenizeSummary::skipped_total() const {
  int64_t n = 0;
  for (int64_t k : skipped) n += k;
  return n;
}

namespace {

ShardSetInfo shard_info(const TokenizeConfig& cfg, const Tokenizer& tok, const std::vector<std::string>& files,
                        const std::string& tool_version) {
  ShardSetInfo info;
  info.tokenizer_hash = tok.hash();
  info.vocab_size = tok.vocab_size();
  info.bos_id = tok.bos_id().value_or(-1);
  info.eos_id = tok.eos_id().value_or(-1);
  info.source_files = files;
  info.tool_version = tool_version;
  info.with_loss_mask = cfg.format != "text" && cfg.mask_prompt;
  return info;
}

// Writes one batch's documents in order and counts its bad records; a bad record under
// on_error=fail comes back as the message to stop with.
std::string write_result(Result& r, const TokenizeConfig& cfg, const std::string& file, bool with_mask,
                         ShardSetWriter& writer, TokenizeSummary& sum, std::ostream& log) {
  for (Outcome& o : r.outcomes) {
    ++sum.records;
    if (o.ok) {
      const uint8_t* mask = with_mask && !o.doc.mask.empty() ? o.doc.mask.data() : nullptr;
      writer.add_document(o.doc.ids.data(), o.doc.ids.size(), mask);
      sum.truncated += o.doc.truncated;
      sum.segment_fallbacks += o.doc.segment_fallback;
      continue;
    }
    std::string msg = record_place(file, o.line) + ": " + o.bad.message + " [" + skip_reason_name(o.bad.reason) + "]";
    if (cfg.on_error == "fail") return msg + " (--on-error skip counts such records and goes on)";
    const int64_t shown = sum.skipped_total();  // messages printed so far
    if (shown < cfg.max_messages) log << "[data] skipped " << msg << "\n";
    if (shown == cfg.max_messages) log << "[data] further skipped records are only counted (max_messages)\n";
    ++sum.skipped[static_cast<size_t>(o.bad.reason)];
  }
  return r.fatal;
}

}  // namespace

TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, std::ostream& log) {
  validate(cfg);
  TokenizeSummary sum;
  std::vector<std::string> files = expand_inputs(cfg.inputs);
  for (const auto& f : files) {
    struct stat st {};
    if (stat(f.c_str(), &st) == 0) sum.input_bytes += static_cast<uint64_t>(st.st_size);
  }
  sum.files = static_cast<int64_t>(files.size());
  for (const auto& f : files) {  // a .txt line has no fields to render
    if (cfg.format != "text" && input_kind_of(f) == InputKind::kText) {
      throw Error("format=" + cfg.format + " reads JSONL records, but " + f + " is a .txt file (use format=text)");
    }
  }
  auto tok = Tokenizer::load(cfg.tokenizer);
  const ShardSetInfo info = shard_info(cfg, *tok, files, tool_version);
  ShardSetWriter writer(cfg.output, info, cfg.tokens_per_shard);

  SignalScope signals;
  Pipeline pipe(cfg, files, tok);
  sum.encoder_threads = pipe.encoders();
  Progress progress(cfg.progress || isatty(STDERR_FILENO), sum.input_bytes);
  auto stop_with = [&](const std::string& msg) {
    pipe.stop();
    progress.done();
    throw Error(msg);  // the writer's destructor keeps the finished shards, writes no index
  };
  pipe.start();
  for (Result r;;) {
    bool idle = false;
    if (!pipe.next(r, std::chrono::milliseconds(200), idle)) break;
    if (g_signal) {
      stop_with("interrupted by signal " + std::to_string(g_signal) + "; the finished shards stay in " +
                cfg.output + " (no index.json: the set is incomplete)");
    }
    if (!idle) {
      std::string stop = write_result(r, cfg, files[r.file], info.with_loss_mask, writer, sum, log);
      if (!stop.empty()) stop_with(stop);
    }
    progress.update(r.bytes_done, writer.stats().tokens);
  }
  pipe.stop();
  progress.update(sum.input_bytes, writer.stats().tokens, true);
  progress.done();
  ShardSetStats st = writer.finish();
  sum.documents = st.documents;
  sum.tokens = st.tokens;
  sum.masked_tokens = st.masked_tokens;
  sum.shards = st.shards;
  sum.seconds = Progress::now() - progress.start();
  return sum;
}

std::string format_summary(const TokenizeSummary& s, const TokenizeConfig& cfg) {
  std::ostringstream os;
  char frac[32];
  std::snprintf(frac, sizeof(frac), "%.2f%%", s.tokens ? 100.0 * double(s.masked_tokens) / double(s.tokens) : 0.0);
  os << "[data] " << s.files << " file(s), " << s.records << " record(s) -> " << s.documents << " documents, "
     << s.tokens << " tokens (" << frac << " masked), " << s.shards << " shard(s) in " << cfg.output << "\n";
  os << "[data] skipped " << s.skipped_total() << " record(s)";
  const char* sep = ": ";
  for (int k = 0; k < kNumSkipReasons; ++k) {
    if (int64_t n = s.skipped[static_cast<size_t>(k)]) {
      os << sep << skip_reason_name(static_cast<SkipReason>(k)) << " " << n;
      sep = ", ";
    }
  }
  os << "\n";
  if (s.truncated) os << "[data] truncated " << s.truncated << " document(s) to " << cfg.max_tokens << " tokens\n";
  if (s.segment_fallbacks) {
    os << "[data] " << s.segment_fallbacks << " document(s) could not be aligned to their text; their segments "
       << "were tokenized separately\n";
  }
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.2f s", s.seconds);
  os << "[data] " << (s.seconds < 60 ? std::string(secs) : format_duration(s.seconds)) << ", "
     << human(double(s.tokens) / std::max(s.seconds, 1e-9))
     << " tokens/s with " << s.encoder_threads << " encoder thread(s)\n";
  return os.str();
}

}  // namespace ftune::data
