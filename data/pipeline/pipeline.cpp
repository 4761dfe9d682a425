#include "data/pipeline/pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/sha256.h"
#include "common/text.h"
#include "data/pipeline/item_pipeline.h"
#include "data/pipeline/manifest.h"
#include "data/pipeline/output_dir.h"
#include "data/shards/format.h"
#include "data/shards/shard_writer.h"
#include "data/tokenizer/tokenizer.h"

namespace ftune::data {
namespace {

using Json = nlohmann::json;

// Ranks agree every tick on whether to go on (a signal or a failure anywhere stops them all)
// and whether all are done; a dead peer ends the job at the next tick through the group's
// timeout instead of at a final barrier hours later. Ticks cost microseconds.
constexpr double kTickSeconds = 0.5;  // [s]

volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

// SIGINT, SIGTERM and SIGUSR1 (Slurm's usual pre-timeout signal) stop the run at the next
// tick; the previous handlers come back after.
class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    for (size_t i = 0; i < kSignals.size(); ++i) old_[i] = std::signal(kSignals[i], on_signal);
  }
  ~SignalScope() {
    for (size_t i = 0; i < kSignals.size(); ++i) std::signal(kSignals[i], old_[i]);
  }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGUSR1};
  std::array<void (*)(int), 3> old_{};
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

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

// The progress line on stderr (rank 0): the job's position in this run's input (bytes on
// disk, all ranks), tokens/s and the ETA.
class Progress {
 public:
  Progress(bool enabled, uint64_t total_bytes) : enabled_(enabled), total_(total_bytes), start_(now_s()) {}
  void update(uint64_t bytes_done, int64_t tokens, bool force = false) {
    double t = now_s();
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

 private:
  bool enabled_;
  uint64_t total_;
  double start_, last_ = 0;
};

std::string record_place(const std::string& file, int64_t line) {
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

// Everything every rank computes alike from the configuration and the inputs.
struct Job {
  const TokenizeConfig& cfg;
  Group& group;
  std::vector<InputFile> inputs;
  std::vector<WorkItem> items;
  std::shared_ptr<const Tokenizer> tok;
  ShardSetInfo info;
  RunManifest manifest;
  std::unique_ptr<OutputLock> lock;  // rank 0's
  OutputState state;                 // finished before this run
};

ShardSetInfo shard_info(const TokenizeConfig& cfg, const Tokenizer& tok, const std::vector<InputFile>& inputs,
                        const std::string& tool_version) {
  ShardSetInfo info;
  info.tokenizer_hash = tok.hash();
  info.vocab_size = tok.vocab_size();
  info.bos_id = tok.bos_id().value_or(-1);
  info.eos_id = tok.eos_id().value_or(-1);
  for (const auto& in : inputs) info.source_files.push_back(in.path);
  info.tool_version = tool_version;
  info.with_loss_mask = cfg.format != "text" && cfg.mask_prompt;
  return info;
}

// The settings that decide the documents, by format: a resume must match them all.
Settings settings_of(const TokenizeConfig& c, const Tokenizer& tok, const DocumentRenderer& renderer) {
  Settings s = {{"tokenizer_hash", tok.hash()}, {"format", c.format}, {"txt_mode", c.txt_mode},
                {"append_eos", c.append_eos ? "true" : "false"}, {"max_tokens", std::to_string(c.max_tokens)},
                {"too_long", c.too_long}, {"tokens_per_shard", std::to_string(c.tokens_per_shard)}};
  if (c.format == "text") s.emplace_back("text_field", c.text_field);
  if (c.format != "text") s.emplace_back("mask_prompt", c.mask_prompt ? "true" : "false");
  if (c.format == "instruction") {
    for (auto kv : Settings{{"preset", c.preset}, {"prompt_field", c.prompt_field}, {"input_field", c.input_field},
                            {"response_field", c.response_field}, {"instruction_template", c.instruction_template}}) {
      s.push_back(kv);
    }
  }
  if (c.format == "chat") {
    s.emplace_back("messages_field", c.messages_field);
    s.emplace_back("chat_template", c.chat_template.empty() ? "(the tokenizer's)" : c.chat_template);
    s.emplace_back("chat_template_sha256", sha256_hex(renderer.chat_template_source()));
    s.emplace_back("bos_token", tok.bos_token());
    s.emplace_back("eos_token", tok.eos_token());
  }
  return s;
}

std::string records_json(const std::vector<ItemRecord>& records) {
  Json a = Json::array();
  for (const auto& r : records) a.push_back(Json::parse(r.to_json()));
  return a.dump();
}

std::vector<ItemRecord> records_from(const std::string& text) {
  std::vector<ItemRecord> out;
  for (const auto& j : Json::parse(text)) out.push_back(ItemRecord::from_json(j.dump(), "a rank's item record"));
  return out;
}

// Rank 0 takes the lock and checks the directory; every rank learns the finished items or
// rank 0's refusal, and throws that refusal alike.
void agree_on_output(Job& job, std::ostream& log) {
  std::string reply;
  if (job.group.rank() == 0) {
    Json j;
    try {
      job.lock = std::make_unique<OutputLock>(job.cfg.output, job.group.host(), log);
      job.state = prepare_output(job.cfg.output, job.manifest, job.items, job.cfg.resume, log);
      std::vector<ItemRecord> done;
      for (auto& [i, r] : job.state.done) done.push_back(r);
      j = {{"complete", job.state.complete}, {"done", Json::parse(records_json(done))}};
    } catch (const Error& e) {
      job.lock.reset();
      j = {{"error", e.what()}};
    }
    reply = j.dump();
  }
  reply = job.group.broadcast(reply, 0);
  Json j = Json::parse(reply);
  if (j.contains("error")) {
    const std::string why = j["error"].get<std::string>();
    if (job.group.rank() == 0) throw TokenizeStopped(why);
    throw TokenizeStopped("");
  }
  if (job.group.rank() == 0) return;
  job.state.complete = j["complete"].get<bool>();
  for (auto& r : records_from(j["done"].dump())) job.state.done.emplace(r.item, std::move(r));
}

// Writes this rank's results item by item and keeps a record of each finished item.
class RankWriter {
 public:
  explicit RankWriter(const Job& job) : job_(job) {}

  // Throws Error with the message to stop with (file:line of a bad record under on_error=fail,
  // an unreadable input).
  void take(ItemResult& r) {
    if (!r.fatal.empty()) throw Error(r.fatal);
    if (!writer_) open(r.item);
    for (Outcome& o : r.outcomes) write(o);
    bytes_in_item_ = r.bytes_done;
    if (!r.item_end) return;
    rec_.lines = r.lines;
    rec_.shards = writer_->close_part();
    rec_.write(job_.cfg.output);  // after its shards are in place: a record never names a missing shard
    bytes_done_ += job_.items[static_cast<size_t>(rec_.item)].bytes;
    bytes_in_item_ = 0;
    finished_.push_back(std::move(rec_));
    writer_.reset();
    // Fault injection for the resume tests: a slow rank, so that a signal lands mid-run.
    if (const char* ms = std::getenv("FTUNE_FAULT_ITEM_DELAY_MS")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(ms)));
    }
  }

  void abandon() {
    if (writer_) writer_->discard_part();
    writer_.reset();
  }

  const std::vector<ItemRecord>& finished() const { return finished_; }
  uint64_t bytes_done() const { return bytes_done_ + bytes_in_item_; }  // [bytes on disk] for progress
  int64_t tokens() const { return tokens_; }

 private:
  void open(int64_t item) {
    const WorkItem& w = job_.items[static_cast<size_t>(item)];
    rec_ = ItemRecord{};
    rec_.item = item;
    rec_.file = w.file;
    rec_.range = w.range;
    rec_.rank = job_.group.rank();
    rec_.host = job_.group.host();
    writer_ = std::make_unique<ShardSetWriter>(job_.cfg.output, job_.info, job_.cfg.tokens_per_shard,
                                               [item](int64_t piece) { return format::item_shard_file_name(item, piece); });
  }

  void write(Outcome& o) {
    ++rec_.records;
    if (o.ok) {
      const uint8_t* mask = job_.info.with_loss_mask && !o.doc.mask.empty() ? o.doc.mask.data() : nullptr;
      int64_t masked_before = writer_->stats().masked_tokens;
      writer_->add_document(o.doc.ids.data(), o.doc.ids.size(), mask);
      rec_.documents += 1;
      rec_.tokens += static_cast<int64_t>(o.doc.ids.size());
      rec_.masked_tokens += writer_->stats().masked_tokens - masked_before;
      tokens_ += static_cast<int64_t>(o.doc.ids.size());
      rec_.truncated += o.doc.truncated;
      rec_.segment_fallbacks += o.doc.segment_fallback;
      return;
    }
    std::string msg = o.bad.message + " [" + skip_reason_name(o.bad.reason) + "]";
    if (job_.cfg.on_error == "fail") {
      throw Error(record_place(path(), global_line(o.line)) + ": " + msg + " (--on-error skip counts such records and goes on)");
    }
    int64_t shown = 0;
    for (int64_t k : rec_.skipped) shown += k;
    if (shown < job_.cfg.max_messages) rec_.messages.push_back({o.line, msg});
    ++rec_.skipped[static_cast<size_t>(o.bad.reason)];
  }

  const std::string& path() const { return job_.inputs[static_cast<size_t>(rec_.file)].path; }

  // The line in the whole file: lines before the range are counted only here, on the way out.
  int64_t global_line(int64_t local) const {
    if (local <= 0 || rec_.range.begin == 0) return local;
    return count_lines_before(path(), rec_.range.begin - 1) + 1 + local;
  }

  const Job& job_;
  std::unique_ptr<ShardSetWriter> writer_;
  ItemRecord rec_;
  std::vector<ItemRecord> finished_;
  uint64_t bytes_done_ = 0, bytes_in_item_ = 0;
  int64_t tokens_ = 0;
};

struct LoopOutcome {
  bool stopped = false;  // a signal or a failure somewhere
  std::string mine;      // this rank's reason: "signal N" or the failure
  double seconds = 0;
  uint64_t bytes = 0;    // [bytes on disk], all ranks
  int64_t tokens = 0;    // all ranks
};

// Drains this rank's pipeline into the writer, ticking with the other ranks until all are
// done or one of them stops.
LoopOutcome work_loop(Job& job, ItemPipeline& pipe, RankWriter& writer, uint64_t total_bytes) {
  LoopOutcome out;
  Progress progress(job.group.rank() == 0 && (job.cfg.progress || isatty(STDERR_FILENO)), total_bytes);
  const double start = now_s();
  double next_tick = start + kTickSeconds;
  bool mine_done = false;
  job.group.work_started();
  pipe.start();
  while (true) {
    if (!mine_done && out.mine.empty()) {
      ItemResult r;
      bool idle = false;
      try {
        if (!pipe.next(r, std::chrono::milliseconds(100), idle)) mine_done = true;
        else if (!idle) writer.take(r);
      } catch (const std::exception& e) {
        out.mine = e.what();
      }
    } else if (job.group.size() > 1) {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, next_tick - now_s())));
    }
    if (g_signal && out.mine.empty()) out.mine = "signal " + std::to_string(g_signal);
    if (job.group.size() > 1 && now_s() < next_tick && out.mine.empty() && !mine_done) continue;
    std::vector<int64_t> t = {mine_done ? 1 : 0, out.mine.empty() ? 0 : 1, static_cast<int64_t>(writer.bytes_done()),
                              writer.tokens()};
    job.group.sum(t);
    next_tick = now_s() + kTickSeconds;
    out.bytes = static_cast<uint64_t>(t[2]);
    out.tokens = t[3];
    progress.update(out.bytes, out.tokens, t[0] == job.group.size());
    if (t[1] > 0) {
      out.stopped = true;
      break;
    }
    if (t[0] == job.group.size()) break;
  }
  progress.done();
  pipe.stop();
  out.seconds = now_s() - start;
  return out;
}

// Every rank's reason, gathered, in one message on rank 0.
[[noreturn]] void stop_job(Job& job, RankWriter& writer, const LoopOutcome& lo) {
  writer.abandon();
  std::vector<std::string> why = job.group.all_gather(lo.mine);
  std::vector<std::string> hosts = job.group.all_gather(job.group.host());
  std::vector<int64_t> finished = {static_cast<int64_t>(writer.finished().size())};
  job.group.sum(finished);
  job.lock.reset();
  if (job.group.rank() != 0) throw TokenizeStopped("");
  std::string failures, signalled, sig;
  for (int r = 0; r < job.group.size(); ++r) {
    const std::string& w = why[static_cast<size_t>(r)];
    std::string who = "rank " + std::to_string(r) + " on " + hosts[static_cast<size_t>(r)];
    if (w.rfind("signal ", 0) == 0) {
      signalled += (signalled.empty() ? "" : ", ") + who;
      if (sig.empty()) sig = w.substr(7);
    } else if (!w.empty()) {
      failures += (job.group.size() > 1 ? "[" + who + "] " : "") + w + "\n";
    }
  }
  const int64_t done = static_cast<int64_t>(job.state.done.size()) + finished[0];
  std::string where = "; the " + std::to_string(done) + " finished of " + std::to_string(job.items.size()) +
                      " work item(s) stay in " + job.cfg.output + " (no index.json: the set is incomplete)" +
                      "; rerun with --resume to continue from them";
  if (!failures.empty()) {
    failures.pop_back();
    throw TokenizeStopped(failures + (job.group.size() > 1 ? "\n[data] the job stopped" : "") + where);
  }
  throw TokenizeStopped("interrupted by signal " + sig + (job.group.size() > 1 ? " on " + signalled : "") + where);
}

// Skipped-record messages of every item in set order, with line numbers in the whole file.
void print_messages(const Job& job, const std::vector<const ItemRecord*>& all, std::ostream& log) {
  std::map<int64_t, int64_t> lines_before;  // per file, of the items before this one
  int64_t shown = 0, skipped = 0;
  for (const ItemRecord* r : all) {
    const std::string& path = job.inputs[static_cast<size_t>(r->file)].path;
    for (const auto& m : r->messages) {
      if (shown++ < job.cfg.max_messages) {
        log << "[data] skipped " << record_place(path, m.line ? lines_before[r->file] + m.line : 0) << ": " << m.text << "\n";
      }
    }
    for (int64_t k : r->skipped) skipped += k;
    lines_before[r->file] += r->lines;
  }
  if (skipped > job.cfg.max_messages) log << "[data] further skipped records are only counted (max_messages)\n";
}

void add_up(TokenizeSummary& s, const ItemRecord& r) {
  s.records += r.records;
  s.documents += r.documents;
  s.tokens += r.tokens;
  s.masked_tokens += r.masked_tokens;
  s.shards += static_cast<int64_t>(r.shards.size());
  s.truncated += r.truncated;
  s.segment_fallbacks += r.segment_fallbacks;
  for (size_t k = 0; k < r.skipped.size(); ++k) s.skipped[k] += r.skipped[k];
}

// Rank 0 gathers every rank's records, writes the index and tells the others how it went.
void finish_set(Job& job, const std::vector<ItemRecord>& mine, TokenizeSummary& sum, std::ostream& log) {
  std::vector<std::string> gathered = job.group.all_gather(records_json(mine));
  std::string status;
  if (job.group.rank() == 0) {
    std::map<int64_t, ItemRecord> all = job.state.done;
    for (const auto& g : gathered) {
      for (auto& r : records_from(g)) all.emplace(r.item, std::move(r));
    }
    std::vector<const ItemRecord*> order;
    std::vector<ShardIndexEntry> shards;
    for (const auto& w : job.items) {
      auto it = all.find(w.index);
      if (it == all.end()) {
        status = "internal: work item " + std::to_string(w.index) + " (" + describe_item(w, job.inputs) +
                 ") has no record at the end of the run; rerun with --resume";
        break;
      }
      order.push_back(&it->second);
      shards.insert(shards.end(), it->second.shards.begin(), it->second.shards.end());
      add_up(sum, it->second);
    }
    if (status.empty() && !job.state.complete) {
      try {
        make_shard_index(job.info, shards).write(job.cfg.output);  // last: its presence marks the set complete
      } catch (const Error& e) {
        status = e.what();
      }
    }
    if (status.empty()) print_messages(job, order, log);
  }
  status = job.group.broadcast(status, 0);
  job.lock.reset();
  if (!status.empty()) throw TokenizeStopped(job.group.rank() == 0 ? status : "");
}

std::unique_ptr<Job> plan_job(const TokenizeConfig& cfg, const std::string& tool_version, Group& group) {
  validate(cfg);
  auto job = std::make_unique<Job>(Job{cfg, group, {}, {}, nullptr, {}, {}, nullptr, {}});
  std::vector<std::string> files = expand_inputs(cfg.inputs);
  for (const auto& f : files) {  // a .txt line has no fields to render
    if (cfg.format != "text" && input_kind_of(f) == InputKind::kText) {
      throw Error("format=" + cfg.format + " reads JSONL records, but " + f + " is a .txt file (use format=text)");
    }
  }
  job->inputs = describe_inputs(files, cfg.txt_mode == "file");
  job->items = plan_items(job->inputs, static_cast<uint64_t>(cfg.item_bytes));
  job->tok = Tokenizer::load(cfg.tokenizer);
  job->info = shard_info(cfg, *job->tok, job->inputs, tool_version);
  RunManifest& m = job->manifest;
  m.inputs = job->inputs;
  m.item_bytes = static_cast<uint64_t>(cfg.item_bytes);
  m.items = static_cast<int64_t>(job->items.size());
  m.tool_version = tool_version;
  // The renderer resolves the chat template, whose text the settings include; the pipeline
  // builds its own.
  DocumentRenderer renderer(cfg, ChatTokens{job->tok->bos_token(), job->tok->eos_token(), job->tok->chat_template()});
  m.settings = settings_of(cfg, *job->tok, renderer);
  return job;
}

// Plans the job on every rank; when any rank cannot (a bad setting, an input one node cannot
// see), all stop and rank 0 says which rank on which host failed and why.
std::unique_ptr<Job> plan_on_every_rank(const TokenizeConfig& cfg, const std::string& tool_version, Group& group) {
  std::unique_ptr<Job> job;
  std::string err;
  try {
    job = plan_job(cfg, tool_version, group);
  } catch (const Error& e) {
    err = e.what();
  }
  if (group.size() == 1) {
    if (!err.empty()) throw TokenizeStopped(err);
    return job;
  }
  std::vector<std::string> errs = group.all_gather(err), hosts = group.all_gather(group.host());
  std::set<std::string> distinct;
  for (const auto& e : errs) if (!e.empty()) distinct.insert(e);
  if (distinct.empty()) return job;
  if (group.rank() != 0) throw TokenizeStopped("");
  bool everywhere = distinct.size() == 1 && std::count(errs.begin(), errs.end(), "") == 0;
  if (everywhere) throw TokenizeStopped(*distinct.begin());
  std::string msg;
  for (size_t r = 0; r < errs.size(); ++r) {
    if (!errs[r].empty()) msg += (msg.empty() ? "" : "\n") + ("[rank " + std::to_string(r) + " on " + hosts[r] + "] ") + errs[r];
  }
  throw TokenizeStopped(msg);
}

}  // namespace

int64_t TokenizeSummary::skipped_total() const {
  int64_t n = 0;
  for (int64_t k : skipped) n += k;
  return n;
}

TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, std::ostream& log) {
  SoloGroup solo;
  return run_tokenize(cfg, tool_version, solo, log);
}

TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, Group& group,
                             std::ostream& log) {
  SignalScope signals;
  std::unique_ptr<Job> job_ptr = plan_on_every_rank(cfg, tool_version, group);
  Job& job = *job_ptr;
  TokenizeSummary sum;
  sum.files = static_cast<int64_t>(job.inputs.size());
  for (const auto& in : job.inputs) sum.input_bytes += in.bytes;
  sum.ranks = group.size();
  sum.items = static_cast<int64_t>(job.items.size());
  agree_on_output(job, log);
  sum.items_resumed = static_cast<int64_t>(job.state.done.size());
  sum.already_complete = job.state.complete;
  std::set<int64_t> todo;
  uint64_t todo_bytes = 0;
  for (const auto& w : job.items) {
    if (job.state.done.count(w.index)) continue;
    todo.insert(w.index);
    todo_bytes += w.bytes;
  }
  const std::vector<std::vector<int64_t>> shares = assign_items(job.items, todo, group.size());
  std::vector<WorkItem> mine;
  for (int64_t i : shares[static_cast<size_t>(group.rank())]) mine.push_back(job.items[static_cast<size_t>(i)]);
  ItemPipeline pipe(cfg, job.inputs, std::move(mine), job.tok);
  sum.encoder_threads = pipe.encoders();
  RankWriter writer(job);
  LoopOutcome lo = work_loop(job, pipe, writer, todo_bytes);
  if (lo.stopped) stop_job(job, writer, lo);
  sum.seconds = lo.seconds;
  sum.tokens_this_run = lo.tokens;
  sum.bytes_this_run = lo.bytes;
  finish_set(job, writer.finished(), sum, log);
  return sum;
}

std::string format_summary(const TokenizeSummary& s, const TokenizeConfig& cfg) {
  std::ostringstream os;
  char frac[32];
  std::snprintf(frac, sizeof(frac), "%.2f%%", s.tokens ? 100.0 * double(s.masked_tokens) / double(s.tokens) : 0.0);
  if (s.already_complete) os << "[data] " << cfg.output << " is already complete (index.json); nothing to do\n";
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
  if (s.items_resumed) {
    os << "[data] resumed: " << s.items_resumed << " of " << s.items << " work item(s) were finished by an earlier run\n";
  }
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.2f s", s.seconds);
  const double sec = std::max(s.seconds, 1e-9);
  os << "[data] " << (s.seconds < 60 ? std::string(secs) : format_duration(s.seconds)) << ", "
     << human(double(s.tokens_this_run) / sec) << " tokens/s, " << format_bytes(double(s.bytes_this_run) / sec)
     << "/s of input with " << (s.ranks > 1 ? std::to_string(s.ranks) + " rank(s) x " : "") << s.encoder_threads
     << " encoder thread(s)\n";
  return os.str();
}

}  // namespace ftune::data
