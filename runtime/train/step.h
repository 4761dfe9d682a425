// One optimizer step and one evaluation pass of `ftune train`. Internal to runtime/train.
#pragma once

#include <memory>

#include "data/reader/token_shard_reader.h"
#include "sharding/offload.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/run.h"
#include "runtime/train/train_config.h"

namespace ftune::train {

// The optimizers behind one step(lr) call.
class Optimizer {
 public:
  Optimizer(const OptimSection& cfg, const std::vector<sharding::OptimParam>& params);
  void step(double lr);
  void zero_grad();
  // What checkpoints save and restore.
  OptimizerState checkpoint_view(std::vector<sharding::OptimParam>& params);

 private:
  int64_t steps_ = 0;  // SGD keeps no count of its own
  OptimSection cfg_;
  std::unique_ptr<sharding::AdamW> adamw_;
  std::unique_ptr<sharding::OffloadedAdamW> offloaded_;  // optim.offload: AdamW on the host
  std::unique_ptr<sharding::SGD> sgd_;
};

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;     // trained (target) tokens of the global batch
  int64_t positions = 0;  // every token position of the global batch (what the FLOPs count)
  double seconds = 0;     // [s] wall time of the step on this rank
  double data_s = 0;      // [s] of it waiting for the reader
  double comm_s = 0;      // [s] of it in the engine's collectives
  bool skipped = false;
};

// [loop] Every micro-batch of this rank's share, the loss normalised by the trained tokens of
// the whole global batch, then reduce, clip and update (skipped when not finite).
StepResult train_step(const TrainConfig& cfg, Run& run, Rank& rank, data::TokenShardReader& reader,
                      Optimizer& optim, int64_t step);

struct Eval {
  double loss = 0, ppl = 0, acc = 0;
  int64_t tokens = 0;
  // The value of eval.metric.
  double metric(const std::string& name) const;
};

// [evaluate] Every held-out sample once (one epoch of the validation split), summed over ranks.
Eval evaluate(const TrainConfig& cfg, Run& run, Rank& rank);

}  // namespace ftune::train
