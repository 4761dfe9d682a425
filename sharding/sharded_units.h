// The FSDP-style engine: every sharding unit's parameters in one flat buffer, each rank owning
// one contiguous slice, gathered around the unit's forward and backward.
//
// Modes:
//  - full: all parameters train. A rank keeps an fp32 master slice of every unit (the
//    optimizer's parameter) and, after backward, only its slice of the unit's gradient
//    (reduce-scattered). Parameters exist in full only while their unit runs.
//  - frozen_sharded: the frozen base is sliced the same way (compute dtype, no master, never
//    reduced) for bases too large to hold on every rank; the trainable parameters (adapters)
//    stay whole on every rank and their gradients are all-reduced.
//  - frozen_replicated: the frozen base stays whole on every rank in the compute dtype; only
//    the trainable parameters' gradients are all-reduced (one bucket).
//
// With activation checkpointing a unit runs as one autograd Function: forward gathers, runs
// without saving activations and frees; backward gathers again, recomputes with grad,
// back-propagates, reduce-scatters and frees. Without it, forward keeps activations: the
// gathered storage is freed after forward and refilled in place before backward (saved tensors
// share the storage, so they see the refill), and gradients are reduce-scattered once every
// parameter of the unit has accumulated its own.
//
// Knows units, flat buffers and the communicator; not Llama. Hybrid sharding: `shard` is the
// group a unit is sliced over (all ranks, or one node's), `replicas` (may be null) the group of
// ranks holding the same slice, across which gradients are all-reduced.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "runtime/comm/communicator.h"
#include "sharding/flat_layout.h"
#include "sharding/optimizer.h"

namespace ftune::sharding {

enum class ShardMode { full, frozen_sharded, frozen_replicated };

struct EngineOptions {
  ShardMode mode = ShardMode::full;
  bool activation_checkpointing = true;
  // With activation checkpointing, which units recompute (by unit index; empty: all). A unit
  // call follows the first unit it uses; the others it uses (a tied head's embedding) must
  // agree, as one call cannot be both.
  std::vector<bool> checkpoint_units;
  at::ScalarType compute_dtype = at::kFloat;  // gathered parameters, activations
  at::ScalarType reduce_dtype = at::kFloat;   // gradient reduction (bf16 halves the bytes)
  at::Device device = at::kCPU;
  // On a shard group of one rank with the compute dtype of the slices, the module tensors view
  // the slices themselves: nothing to gather, free or reduce (the plain single-process layout,
  // without copies). Off only to test the gather/free machinery in one process.
  bool resident_when_alone = true;
};

// One unit as the model hands it over: its module tensors by full name. In the sharded modes
// the engine repoints them (set_data) at views of the unit's gathered buffer.
struct UnitParams {
  std::string name;
  std::vector<std::pair<std::string, at::Tensor>> params;
};

// Seconds and bytes spent in each collective since construction (or reset_counters()).
struct CommCounters {
  double all_gather_s = 0, reduce_scatter_s = 0, all_reduce_s = 0;
  int64_t all_gather_bytes = 0, reduce_scatter_bytes = 0, all_reduce_bytes = 0;
  int64_t gathers = 0;     // unit all-gathers started (forward, backward, prefetches)
  int64_t prefetches = 0;  // of which issued ahead of their unit
};

class ShardedUnits {
 public:
  ShardedUnits(std::vector<UnitParams> units, comm::Communicator& shard,
               comm::Communicator* replicas, EngineOptions options);
  ~ShardedUnits();
  ShardedUnits(const ShardedUnits&) = delete;
  ShardedUnits& operator=(const ShardedUnits&) = delete;

  // Runs `fn(input)` with the parameters of the units in `uses` present, as the model's unit
  // runner: gathered before, freed after, with gradients routed as the mode says.
  at::Tensor run(const std::vector<size_t>& uses, std::function<at::Tensor(const at::Tensor&)> fn,
                 const at::Tensor& input);

  size_t num_units() const { return units_.size(); }
  const std::string& unit_name(size_t u) const;
  const FlatLayout& layout(size_t u) const;
  // This rank's slice of unit u [shard_numel]: fp32 master (full) or compute dtype (frozen
  // sharded); undefined in frozen_replicated mode. Fill it to load.
  at::Tensor& shard(size_t u);
  // Repoints the module tensors of the sliced units at views of their (empty) gathered buffers.
  // With take_weights, this rank's slices are first copied from the module tensors as they are
  // (whole on every rank: tests, models initialised in memory); else the slices stay zero
  // until loaded, and the module tensors may be on the meta device (no memory).
  void install(bool take_weights);

  // What the optimizer updates: full mode the master slices, else the trainable parameters,
  // each with the element ranges that `decays(name, dims)` says get weight decay.
  std::vector<OptimParam> optim_params(
      const std::function<bool(const std::string&, int64_t)>& decays = decays_by_default) const;
  // Gradient work after backward that the hooks cannot do: all-reduce of replicated
  // gradients (frozen modes), and of the slices across replicas (hybrid sharding).
  void finish_backward();
  // The global L2 norm of all trainable gradients (one all-reduce); counts every element once.
  double grad_norm();
  // Full tensors of unit u, gathered (every rank must call; collective), in fp32.
  std::vector<std::pair<std::string, at::Tensor>> gather_unit(size_t u);

  const CommCounters& counters() const { return counters_; }
  void reset_counters() { counters_ = {}; }
  comm::Communicator& shard_comm() { return shard_; }

  struct Unit;  // internal; public for the autograd Function in sharded_units.cpp

 private:
  friend struct UnitFunction;
  void start_gather(Unit& u);
  void gather(size_t u);
  // Issues unit u's all-gather ahead of its turn, so on GPU it overlaps the current unit's
  // compute; at most one unit ahead (the planner counts two units in flight).
  void prefetch(size_t u);
  void drop_prefetches();
  void release(size_t u);
  void reduce_grads(size_t u, const std::vector<at::Tensor>& flat_grads);
  at::Tensor run_checkpointed(const std::vector<size_t>& uses,
                              std::function<at::Tensor(const at::Tensor&)> fn,
                              const at::Tensor& input);
  bool checkpointed(const std::vector<size_t>& uses) const;
  at::Tensor run_kept(const std::vector<size_t>& uses,
                      std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& input);

  std::vector<std::unique_ptr<Unit>> units_;
  comm::Communicator& shard_;
  comm::Communicator* replicas_;
  EngineOptions options_;
  CommCounters counters_;
};

}  // namespace ftune::sharding
