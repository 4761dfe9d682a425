// Training checkpoints: OUT/checkpoints/step-000120/ holds one safetensors file per rank (its
// slices of every unit's fp32 master and optimizer state; rank 0 also the whole tensors every
// rank shares, such as LoRA adapters) and meta.json (step, world size, unit sizes, reader state,
// data fingerprint, config). Written into step-000120.tmp/ and renamed once every rank has
// finished, then `latest` is replaced atomically: a crash never leaves a half checkpoint as
// the latest. A resume reads the slices it needs from any number of writers, so N ranks' files
// restore on M ranks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/reader/batch.h"
#include "runtime/comm/communicator.h"
#include "sharding/optimizer.h"
#include "sharding/sharded_units.h"

namespace ftune::train {

// Everything resumable besides tensors: one value, written and read as a whole.
struct TrainState {
  int64_t step = 0;          // optimizer steps done
  int64_t tokens = 0;        // trained tokens so far
  int64_t skipped = 0;       // steps skipped for a non-finite loss or gradient
  data::ReaderState reader;  // where the next batch starts
  // Evaluation history for early stopping and the best checkpoint (evaluations during
  // training only; the baseline before step 1 does not count).
  std::optional<double> best;    // best eval.metric so far
  int64_t best_step = 0;         // the step it was measured after
  int64_t evals_since_best = 0;  // evaluations since then without an improvement
  int64_t seed = 0;              // train.seed: dropout draws from (seed, step, rank, micro-batch)
};

// What fixes the sample order; a resume that changes any of it is refused, naming the key.
struct DataFingerprint {
  std::string shards, val_shards, packing;
  int64_t seq_len = 0, global_batch = 0, seed = 0;
  double val_fraction = 0;
};

// The optimizer's per-parameter state (parallel to the engine's optim_params()).
struct OptimizerState {
  std::vector<sharding::OptimParam>* params = nullptr;
  std::function<std::vector<std::pair<std::string, at::Tensor>>(size_t)> state;
  std::function<int64_t()> steps;
  std::function<void(int64_t)> set_steps;
};

// Collective: every rank writes its file; rank 0 the metadata, then the rename and `latest`.
// Keeps the newest `keep` checkpoints (older complete ones are removed) and, with
// `keep_best`, the one of state.best_step; a checkpoint of the best step is named by
// checkpoints/best.
std::string save_checkpoint(const std::string& out_dir, const TrainState& state,
                            const DataFingerprint& data, const std::string& config_toml,
                            sharding::ShardedUnits& engine, const OptimizerState& optim,
                            comm::Communicator& comm, int keep, bool keep_best);

// The checkpoint of the best evaluation (checkpoints/best), if one was written.
std::optional<std::string> best_checkpoint(const std::string& out_dir);

// `resume`: "none", "auto" (the latest complete checkpoint under out_dir, if any) or a
// checkpoint directory. Returns the path to restore, or none.
std::optional<std::string> checkpoint_to_resume(const std::string& resume, const std::string& out_dir);

// Restores masters, optimizer state and TrainState, re-slicing for this world size. Throws
// ftune::Error naming what differs when the data fingerprint or the model's units do.
TrainState load_checkpoint(const std::string& dir, const DataFingerprint& data,
                           sharding::ShardedUnits& engine, const OptimizerState& optim,
                           comm::Communicator& comm);

}  // namespace ftune::train
