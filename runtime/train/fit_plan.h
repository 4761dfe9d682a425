// Will a training run fit on its GPUs, and if not, what would make it fit: the planner behind
// `ftune plan` and the check `ftune train` makes before loading weights. Torch-free (the
// launcher runs it without LibTorch): model shapes from config.json or a preset, sharding
// arithmetic from sharding/memory_plan.h, activations from runtime/memory_estimate.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/memory_estimate.h"
#include "runtime/model/config.h"
#include "runtime/train/train_config.h"

namespace ftune::train {

// The knobs of one run that decide its memory; `ftune plan` takes them as flags, `ftune
// train` derives them from its config (plan_options()).
struct PlanOptions {
  std::string model;   // HF model directory (config.json suffices)
  std::string preset;  // or a model preset: llama-3.1-8b, llama-3.1-70b, llama-3.1-405b, ...
  std::string method = "full";  // full | lora | qlora (LoRA on an NF4 base)
  std::string shard = "auto";   // lora's frozen base: auto (replicated) | replicated | sharded
  std::string optimizer = "adamw";  // adamw (two fp32 moments) | sgd (one)
  bool offload = false;          // full: AdamW moments + a master copy in host memory
  int64_t gpus = 1;
  int64_t gpus_per_node = 8;
  double gpu_memory_gb = 80;     // [GB = 1e9 bytes] per GPU
  double host_memory_gb = 0;     // [GB] per node, for offload; 0: not checked
  int64_t micro_batch = 1;       // [sequences per GPU per forward]
  int64_t seq_len = 2048;        // [tokens]
  std::string activation_checkpointing = "on";  // on | off | every_k
  int64_t activation_checkpointing_k = 2;
  std::string compute = "bfloat16";  // float32 | bfloat16
  std::string reduce = "float32";    // float32 | bfloat16
  int64_t loss_chunk = 1024;     // [tokens]
  int64_t lora_r = 16;
  std::vector<std::string> lora_targets = {"q_proj", "k_proj", "v_proj", "o_proj"};

  template <class F>
  void fields(F&& f) {
    f("model", model, "Hugging Face model directory (config.json is enough)");
    f("preset", preset, "or a model shape: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-3.1-70b, llama-3.1-405b");
    f("method", method, "full, lora, or qlora (LoRA on a 4-bit NF4 base)");
    f("shard", shard, "LoRA's frozen base: replicated (auto) or sharded over the GPUs");
    f("optimizer", optimizer, "adamw or sgd (one moment instead of two)");
    f("offload", offload, "full fine-tuning: AdamW moments and a master copy in host memory (optim.offload)");
    f("gpus", gpus, "GPUs in the run (one rank each)");
    f("gpus_per_node", gpus_per_node, "GPUs per node (host memory and GPU counts go by node)");
    f("gpu_memory_gb", gpu_memory_gb, "memory of one GPU in GB (1e9 bytes)");
    f("host_memory_gb", host_memory_gb, "host memory per node in GB for offload; 0: not checked");
    f("micro_batch", micro_batch, "sequences per GPU per forward pass");
    f("seq_len", seq_len, "tokens per sequence");
    f("activation_checkpointing", activation_checkpointing, "on, off or every_k");
    f("activation_checkpointing_k", activation_checkpointing_k, "with every_k: layers 0, k, 2k, ... recompute");
    f("compute", compute, "compute dtype: bfloat16 or float32");
    f("reduce", reduce, "gradient reduction dtype: float32 or bfloat16");
    f("loss_chunk", loss_chunk, "tokens per chunk of logits in the loss");
    f("lora_r", lora_r, "LoRA rank");
    f("lora_targets", lora_targets, "projections with adapters (q_proj ... down_proj, or all-linear)");
  }
};

// One change that lowers the per-GPU total, with the total it gives.
struct Suggestion {
  std::string change;  // in words: "activation checkpointing on every layer"
  std::string flag;    // for `ftune plan`: "--activation-checkpointing on"
  std::string key;     // for the run config: "train.activation_checkpointing = on"
  // false: the change swaps the method (qlora for a full fine-tune or LoRA), so it is offered
  // alone and never folded into the all-at-once suggestion.
  bool same_method = true;
  int64_t total = 0;   // [bytes] per GPU with this change
  bool fits = false;
};

struct PlanResult {
  std::string model;  // what was planned: the preset or directory
  PlanOptions options;
  sharding::MemoryPlan memory;
  int64_t capacity = 0;       // [bytes] one GPU
  int64_t host_per_node = 0;  // [bytes] offloaded state of one node's ranks
  bool fits = false;
  std::vector<Suggestion> suggestions;  // empty when it fits
};

// Checks the options (throws ftune::Error naming the flag) and plans them for `cfg`.
PlanResult plan_run(const model::ModelConfig& cfg, const PlanOptions& options);
// The model of --model or --preset (exactly one).
model::ModelConfig plan_model(const PlanOptions& options);

// The options of a `ftune train` config on `world` ranks, `per_node` per node, GPUs of
// `gpu_bytes` each.
PlanOptions plan_options(const TrainConfig& cfg, int world, int per_node, int64_t gpu_bytes);

// The human table with the suggestions, and the JSON (bytes throughout).
std::string plan_text(const PlanResult& r);
nlohmann::json plan_json(const PlanResult& r);

}  // namespace ftune::train
