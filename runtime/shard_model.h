// The seam between the model and the sharding engine: the model's units go to the engine, and
// every unit of every forward runs through it. The model never learns about ranks.
#pragma once

#include <memory>
#include <string>

#include "runtime/model/llama.h"
#include "sharding/sharded_units.h"

namespace ftune::model {

// Hands model's units (parameter_units()) to a new engine and routes the model's unit runner
// through it. With `take_weights`, this rank's slices are taken from the module tensors as
// they are (a model initialised or loaded whole, for tests); otherwise call load_shards().
// The engine must outlive the model's forward passes.
std::unique_ptr<sharding::ShardedUnits> shard_model(CausalLM& model, comm::Communicator& shard,
                                                    comm::Communicator* replicas,
                                                    const sharding::EngineOptions& options,
                                                    bool take_weights);

struct LoadStats {
  uint64_t bytes_read = 0;  // [bytes] of tensor data read from the files
};

// Reads this rank's slice of every sliced unit straight from the HF checkpoint in `dir`: only
// the byte ranges of the slice (which may cross tensor and file boundaries), converted from the
// stored dtype to the slice's. Missing tensors and shape mismatches throw ftune::Error naming them.
LoadStats load_shards(sharding::ShardedUnits& engine, const std::string& dir);

}  // namespace ftune::model
