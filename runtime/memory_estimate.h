// What a model needs per GPU, for `ftune model info`, `ftune plan` and the check `ftune train`
// makes before loading anything: the model's tensors grouped into sharding units (embeddings,
// one per decoder layer, head) for sharding's memory plan, and the activation and loss bytes
// that only a Llama-aware estimate knows. It lives beside the model, not in it: model code
// knows layers, not sharding.
#pragma once

#include <string>
#include <vector>

#include "runtime/model/config.h"
#include "sharding/memory_plan.h"

namespace ftune::model {

// Units as CausalLM::parameter_units() forms them. With lora_rank > 0 the trainable counts
// are the LoRA A/B matrices (r * (in + out) each) on the projections `lora_targets` names
// (q_proj ... down_proj, or all-linear; empty: all seven); else all params train.
std::vector<sharding::UnitSpec> unit_specs(const ModelConfig& cfg, int lora_rank = 0,
                                           const std::vector<std::string>& lora_targets = {});

// Which layers keep everything for backward and which recompute (train.activation_checkpointing).
enum class Checkpointing { off, on, every_k };

struct ActivationInput {
  int64_t tokens = 0;  // [tokens] of one micro-batch on one rank (rows x seq_len)
  int compute_bytes = 2;  // [bytes/element] activations' dtype
  Checkpointing checkpointing = Checkpointing::on;
  int64_t k = 2;  // every_k: layers 0, k, 2k, ... recompute
};

// [bytes per token] one decoder layer saves for backward: two RMSNorms (their fp32 input and
// normalised copy), q and k after RoPE, v, the attention output and o_proj's input, and the
// MLP's gate, up, SiLU and product. Flash/memory-efficient attention: no T x T matrix.
int64_t layer_activation_bytes_per_token(const ModelConfig& cfg, int compute_bytes);

// [bytes] the activations alive at the peak of one micro-batch's backward: what every layer
// keeps (everything, or only its input when it recomputes), one recomputing layer's full set,
// and the final norm's.
int64_t activation_bytes(const ModelConfig& cfg, const ActivationInput& in);

// [bytes] the chunked linear + cross-entropy (runtime/model/loss.cpp): one chunk of logits in
// the compute dtype and in fp32 plus its gradient in the compute dtype; the head's fp32
// gradient (and its cast) when the head trains, and the hidden states' gradient for the whole
// micro-batch.
int64_t loss_bytes(const ModelConfig& cfg, int64_t tokens, int64_t chunk, int compute_bytes,
                   bool head_trains = true);

// Lines of per-GPU figures: full fine-tunes on several world sizes, and LoRA rank 16.
std::string memory_summary(const ModelConfig& cfg);

}  // namespace ftune::model
