// Prefix tuning (Li & Liang 2021) as PEFT defines it for decoder-only models: per layer,
// `num_virtual_tokens` trained keys and values that every query attends to before the sequence
// (model::AttentionPrefix), the sequence's positions starting after them. PEFT stores all of
// them as one tensor, `prompt_embeddings` [tokens, layers * 2 * kv_dim]: column block 2i holds
// layer i's keys and 2i + 1 its values, each laid out [kv_heads, head_dim].
#pragma once

#include <nlohmann/json.hpp>

#include "runtime/model/llama.h"

namespace ftune::peft {

struct PrefixOptions {
  int64_t num_virtual_tokens = 20;
};

// Freezes the model and gives every layer a prefix, drawn N(0, 1) as PEFT's nn.Embedding
// initialises prompt_embeddings; parameters `<layer>.self_attn.prefix.{key,value}`.
void attach_prefix(model::CausalLM& model, const PrefixOptions& options, uint64_t seed);

// The prefixes in PEFT's layout, float32 [tokens, layers * 2 * kv_dim] on the CPU.
at::Tensor prompt_embeddings(model::CausalLM& model);
// Copies PEFT's prompt_embeddings into the attached prefixes; throws ftune::Error naming the
// shapes when they do not fit the model.
void load_prompt_embeddings(model::CausalLM& model, const at::Tensor& embeddings, const std::string& origin);

// adapter_config.json fields of a prefix adapter for this model (peft_type PREFIX_TUNING).
nlohmann::ordered_json prefix_config(model::CausalLM& model, const PrefixOptions& options);

}  // namespace ftune::peft
