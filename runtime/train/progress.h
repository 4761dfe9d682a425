// [log] What rank 0 prints and records while `ftune train` runs: the progress line (loss, lr,
// grad norm, tokens/s, FLOP/s and MFU, memory, ETA), the per-rank split of step time, and
// evaluations. Internal to runtime/train.
#pragma once

#include "runtime/train/checkpoint.h"
#include "runtime/train/metrics.h"
#include "runtime/train/run.h"
#include "runtime/train/step.h"

namespace ftune::train {

// Model FLOPs per token position of one training step (forward and backward; recomputation
// not counted, as MFU is defined): 6 N + 12 L d T for full fine-tuning (N the parameters of
// the matmuls, d the attention width, T the sequence length), 4 N + 12 L d T for a frozen base
// (no weight gradients).
double flops_per_token(const model::ModelConfig& m, int64_t seq_len, bool frozen_base);

class Progress {
 public:
  Progress(const TrainConfig& cfg, const Run& run, Rank& rank, MetricsLog& log);
  // After each step: counts it; every log.every steps (and the last) the progress line and a
  // metrics record, every log.time_every steps the time split. Collective on those steps.
  void step(const StepResult& r, const TrainState& state, bool last);
  void eval(const Eval& e, int64_t step);

 private:
  const TrainConfig& cfg_;
  Rank& rank_;
  MetricsLog& log_;
  int64_t steps_;                 // of the whole run
  double flops_per_position_;
  double peak_flops_;             // [FLOP/s] of one device; 0 = unknown
  double seconds_ = 0;            // [s] of the steps of this job
  int64_t run_steps_ = 0, run_positions_ = 0, run_tokens_ = 0;
};

}  // namespace ftune::train
