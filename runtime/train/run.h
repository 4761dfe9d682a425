// What one rank of `ftune train` holds while it runs, shared by the parts of the trainer
// (trainer.cpp: set-up and the loop; step.cpp: one step and evaluation; export.cpp; progress.cpp).
// Internal to runtime/train.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "runtime/comm/communicator.h"
#include "runtime/comm/placement.h"
#include "runtime/comm/world.h"
#include "runtime/model/llama.h"
#include "sharding/optimizer.h"
#include "sharding/sharded_units.h"

namespace ftune::train {

struct Rank {
  comm::World world;
  std::unique_ptr<comm::Communicator> comm;
  at::Device device{at::kCPU};
  comm::GpuBinding gpu;  // none on CPU
  bool root() const { return world.rank == 0; }
};

struct Run {
  std::shared_ptr<model::CausalLM> model;
  std::unique_ptr<sharding::ShardedUnits> engine;
  std::vector<sharding::OptimParam> params;
  model::ModelConfig config;
  std::optional<std::string> tokenizer_hash;  // the model's; the shards must carry it
  int64_t steps = 0;                          // of the whole run (train.steps, or from epochs)
};

inline int64_t all_sum_i64(comm::Communicator& comm, int64_t v) {
  comm.all_reduce(&v, &v, 1, comm::DType::i64, comm::ReduceOp::sum);
  return v;
}

inline float all_sum_f32(comm::Communicator& comm, float v) {
  comm.all_reduce(&v, &v, 1, comm::DType::f32, comm::ReduceOp::sum);
  return v;
}

}  // namespace ftune::train
