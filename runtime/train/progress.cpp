#include "runtime/train/progress.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>

namespace ftune::train {
namespace {

// [FLOP/s] dense bf16 tensor-core peak of the GPUs MFU is usually quoted for, by name.
double known_peak_flops(const std::string& name) {
  struct Peak {
    const char* name;
    double tflops;
  };
  static const Peak peaks[] = {{"H200", 989}, {"H100 PCIe", 756}, {"H100", 989}, {"H800", 989},
                               {"GH200", 989}, {"B200", 2250}, {"A100", 312}, {"A800", 312},
                               {"L40S", 362}, {"L4", 121}, {"A10G", 125}, {"A10", 125}};
  for (const auto& p : peaks)
    if (name.find(p.name) != std::string::npos) return p.tflops * 1e12;
  return 0;
}

double peak_flops(const TrainConfig& cfg, const Rank& rank) {
  if (cfg.log.peak_tflops > 0) return cfg.log.peak_tflops * 1e12;
  if (!rank.device.is_cuda() || cfg.precision.compute != "bfloat16") return 0;
  return known_peak_flops(at::cuda::getDeviceProperties(rank.device.index())->name);
}

// [bytes] the peak this rank has used: the caching allocator's on a GPU, the resident set
// on the CPU.
double peak_memory(const Rank& rank) {
  if (rank.device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(rank.device.index());
    return double(stats.allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)].peak);
  }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;  // ru_maxrss is in KiB on Linux
}

std::string duration(double s) {
  char buf[32];
  const long t = long(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

// Where each rank's step went and its peak memory, gathered: the range over ranks and the
// slowest rank; a straggler or a starved reader shows here.
struct RankSplit {
  double lo[4], hi[4];
  int worst[4];
};

RankSplit split_over_ranks(comm::Communicator& comm, const StepResult& r, double memory) {
  const float mine[4] = {float(r.seconds - r.comm_s - r.data_s), float(r.comm_s), float(r.data_s),
                         float(memory)};
  std::vector<float> all(4 * size_t(comm.size()));
  comm.all_gather(mine, all.data(), 4, comm::DType::f32);
  RankSplit t{};
  for (int k = 0; k < 4; ++k) {
    t.lo[k] = t.hi[k] = all[size_t(k)];
    for (int q = 1; q < comm.size(); ++q) {
      const double v = all[4 * size_t(q) + size_t(k)];
      t.lo[k] = std::min(t.lo[k], v);
      if (v > t.hi[k]) {
        t.hi[k] = v;
        t.worst[k] = q;
      }
    }
  }
  return t;
}

}  // namespace

double flops_per_token(const model::ModelConfig& m, int64_t seq_len, bool frozen_base) {
  const double h = double(m.hidden_size);
  const double per_layer = h * double(m.q_dim()) * 2 + h * double(m.kv_dim()) * 2 +
                           3 * h * double(m.intermediate_size);
  const double n = double(m.num_layers) * per_layer + double(m.vocab_size) * h;  // + the head
  const double attention = 12.0 * double(m.num_layers) * double(m.q_dim()) * double(seq_len);
  return (frozen_base ? 4.0 : 6.0) * n + attention;
}

Progress::Progress(const TrainConfig& cfg, const Run& run, Rank& rank, MetricsLog& log)
    : cfg_(cfg), rank_(rank), log_(log), steps_(run.steps),
      flops_per_position_(flops_per_token(run.config, cfg.data.seq_len, cfg.method.name != "full")),
      peak_flops_(peak_flops(cfg, rank)) {}

void Progress::step(const StepResult& r, const TrainState& st, bool last) {
  ++run_steps_;
  seconds_ += r.seconds;
  run_positions_ += r.positions;
  run_tokens_ += r.tokens;
  if (st.step % cfg_.log.every != 0 && !last) return;
  const RankSplit t = split_over_ranks(*rank_.comm, r, peak_memory(rank_));
  const double secs = std::max(seconds_, 1e-9);
  const double tok_s = double(run_positions_) / secs;
  const double flops = tok_s * flops_per_position_ / double(rank_.comm->size());  // per device
  const double mfu = peak_flops_ > 0 ? flops / peak_flops_ : 0;
  const double eta = secs / double(run_steps_) * double(steps_ - st.step);
  std::map<std::string, double> values = {
      {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens_per_s", tok_s},
      {"trained_tokens_per_s", double(run_tokens_) / secs}, {"tflops_per_device", flops / 1e12},
      {"step_s", r.seconds}, {"skipped", double(st.skipped)}, {"peak_memory_gb", t.hi[3] / 1e9},
      {"compute_s_max", t.hi[0]}, {"comm_s_max", t.hi[1]}, {"data_s_max", t.hi[2]}};
  if (peak_flops_ > 0) values["mfu"] = mfu;
  log_.write(st.step, values);
  if (!rank_.root()) return;
  const bool time_line = cfg_.log.time_every > 0 && (st.step % cfg_.log.time_every == 0 || last);
  if (time_line)
    std::fprintf(stderr, "[time] step %lld over %d rank(s): compute %.3f-%.3f s (slowest rank %d), comm "
                 "%.3f-%.3f s (rank %d), data wait %.3f-%.3f s (rank %d)\n",
                 (long long)st.step, rank_.comm->size(), t.lo[0], t.hi[0], t.worst[0], t.lo[1], t.hi[1],
                 t.worst[1], t.lo[2], t.hi[2], t.worst[2]);
  char mfu_text[32] = "";
  if (peak_flops_ > 0) std::snprintf(mfu_text, sizeof mfu_text, " MFU %.1f%%", 100 * mfu);
  std::fprintf(stderr, "[train] step %lld/%lld loss %.4f lr %.3g grad_norm %.3f | %.0f tok/s %.3g TFLOP/s%s | "
               "peak mem %.2f GB (rank %d) | ETA %s%s\n",
               (long long)st.step, (long long)steps_, r.loss, r.lr, r.grad_norm, tok_s, flops / 1e12, mfu_text,
               t.hi[3] / 1e9, t.worst[3], duration(eta).c_str(), r.skipped ? " (skipped: non-finite)" : "");
}

void Progress::eval(const Eval& e, int64_t step) {
  log_.write(step, {{"val_loss", e.loss}, {"val_ppl", e.ppl}, {"val_acc", e.acc}});
  if (rank_.root())
    std::fprintf(stderr, "[eval] step %lld: val_loss %.4f val_ppl %.3f val_acc %.4f (%lld tokens)\n",
                 (long long)step, e.loss, e.ppl, e.acc, (long long)e.tokens);
}

}  // namespace ftune::train
