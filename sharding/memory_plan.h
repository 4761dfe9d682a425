// Per-GPU memory plan for one training configuration, before anything is allocated: the
// numbers behind "will this fit?" (refuse early), `ftune plan` and `ftune model info`. Knows
// units and bytes, not Llama: the runtime describes the model as units with parameter counts
// and hands in its activation and loss estimates (runtime/memory_estimate.h).
//
// The lines follow what the engine (sharded_units.h) allocates:
//  - full: the fp32 master slice is the parameter (no resident compute-dtype copy); with the
//    optimizer offloaded the moments and a master copy move to the host and the fp32 slice
//    stays on the GPU (sharding/offload.h); the gradient slice is fp32; units are gathered in the compute dtype, two in flight (current +
//    prefetched), except on one rank computing in fp32, where the slice is the unit itself.
//  - lora: the frozen base whole on every rank (replicated) or sliced (sharded, gathered like
//    full); adapters, their gradients and moments whole on every rank.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ftune::sharding {

// One sharding unit (a decoder layer, the embeddings, the norm + head).
struct UnitSpec {
  std::string name;
  int64_t params = 0;            // [elements] in the unit (full: all trainable; lora: the frozen base)
  int64_t trainable_params = 0;  // [elements] that get gradients and optimizer state (lora: adapters)
};

enum class Method { full, lora };

struct PlanInput {
  std::vector<UnitSpec> units;
  Method method = Method::full;
  int world_size = 1;              // [ranks] the units are sliced over
  bool frozen_sharded = false;     // lora: slice the frozen base over world_size (full always does)
  bool offload_optimizer = false;  // full: moments (and a master copy) live in host memory
  int param_bytes = 2;             // [bytes/element] compute dtype: gathered units, frozen base
  double frozen_bytes = 0;         // [bytes/element] stored frozen base; 0 = param_bytes (NF4 ~0.52)
  int master_bytes = 4;            // [bytes/element] fp32 master of trainable params
  int grad_bytes = 4;              // [bytes/element] reduced gradient slice
  int optim_bytes = 8;             // [bytes/element] AdamW moments (two fp32)
  int reduce_bytes = 4;            // [bytes/element] flat unit gradient before reduce-scatter
  int units_in_flight = 2;         // gathered units alive at once (current + prefetched)
  int64_t activation_bytes = 0;    // [bytes] activations kept for backward, peak of one micro-batch
  int64_t loss_bytes = 0;          // [bytes] logits chunk and head gradient of the chunked loss
  int64_t workspace_bytes = 0;     // [bytes] anything else the caller knows of
  int64_t fixed_overhead_bytes = 0;  // [bytes] CUDA context, cuBLAS/NCCL workspaces (not allocator)
  double fragmentation = 0;        // [fraction] of allocated bytes lost to the caching allocator
};

struct MemoryPlan {
  Method method = Method::full;
  int64_t params = 0;        // [bytes] resident weights: frozen base (lora), fp32 slice (offload)
  int64_t master = 0;        // [bytes] fp32 master slice (lora: the adapters)
  int64_t optimizer = 0;     // [bytes] optimizer state slice
  int64_t grads = 0;         // [bytes] gradient slice
  int64_t gathered = 0;      // [bytes] full units gathered for compute
  int64_t grad_buffers = 0;  // [bytes] one unit's unsharded gradients before the reduce-scatter
  int64_t activations = 0;   // [bytes]
  int64_t loss = 0;          // [bytes] chunked loss: logits chunk, head gradient
  int64_t workspace = 0;     // [bytes]
  int64_t headroom = 0;      // [bytes] fixed overhead + allocator fragmentation
  int64_t host = 0;          // [bytes] per rank in host memory (offload); not in total()
  // What the caching allocator peaks at (comparable to max_memory_allocated): all but headroom.
  int64_t allocated() const;
  // What the GPU must hold: allocated() + headroom.
  int64_t total() const;
  // (label, bytes) of every GPU line in table order, total last.
  std::vector<std::pair<std::string, int64_t>> rows() const;
  // A table of rows() with GiB figures, for logs, `ftune plan` and `ftune model info`.
  std::string table() const;
};

// Sharded state divides by world_size, each unit padded up to a multiple of it; gathered units
// and unsharded gradient buffers are sized by the largest unit.
MemoryPlan plan_memory(const PlanInput& in);

}  // namespace ftune::sharding
