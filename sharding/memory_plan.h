// Per-GPU memory plan for one training configuration, before anything is allocated: the
// numbers behind "will this fit?" (refuse early) and behind `ftune model info`. Knows units and
// bytes, not Llama: the runtime describes the model as units with parameter counts and an
// activation estimate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::sharding {

// One sharding unit (a decoder layer, the embeddings, the norm + head).
struct UnitSpec {
  std::string name;
  int64_t params = 0;            // [elements] in the unit
  int64_t trainable_params = 0;  // [elements] that get gradients and optimizer state
};

enum class Method { full, lora };

struct PlanInput {
  std::vector<UnitSpec> units;
  Method method = Method::full;
  int world_size = 1;              // [ranks] sharding full fine-tunes over all of them
  int param_bytes = 2;             // [bytes/element] compute copy (bf16)
  int master_bytes = 4;            // [bytes/element] fp32 master of trainable params
  int grad_bytes = 4;              // [bytes/element] reduced gradient shard
  int optim_bytes = 8;             // [bytes/element] AdamW moments (two fp32)
  int units_in_flight = 2;         // gathered units alive at once (current + prefetched)
  int64_t activation_bytes = 0;    // [bytes] activations kept for backward, whole step
  int64_t workspace_bytes = 0;     // [bytes] logits chunks, allocator slack, NCCL buffers
};

struct MemoryPlan {
  int64_t params = 0;       // [bytes] resident compute-dtype parameters (shard or replica)
  int64_t master = 0;       // [bytes] fp32 master slice
  int64_t optimizer = 0;    // [bytes] optimizer state slice
  int64_t grads = 0;        // [bytes] gradient slice
  int64_t gathered = 0;     // [bytes] full units gathered for compute
  int64_t activations = 0;  // [bytes]
  int64_t workspace = 0;    // [bytes]
  int64_t total() const;
  // A table of the lines above with GiB figures, for logs and `ftune model info`.
  std::string table() const;
};

// Full fine-tuning shards params, master, grads and optimizer state evenly over world_size
// and gathers `units_in_flight` of the largest units; LoRA replicates the frozen weights and
// keeps the (small) trainable state replicated too.
MemoryPlan plan_memory(const PlanInput& in);

}  // namespace ftune::sharding
