// What a model needs per GPU before activations, for `ftune model info` and, later, the
// planner that refuses runs which cannot fit: the model's tensors grouped into sharding units
// (embeddings, one per decoder layer, head) and handed to sharding's memory plan. It lives
// beside the model, not in it: model code knows layers, not sharding.
#pragma once

#include <string>
#include <vector>

#include "runtime/model/config.h"
#include "sharding/memory_plan.h"

namespace ftune::model {

// Units as CausalLM::parameter_units() forms them. With lora_rank > 0 the trainable counts
// are the LoRA A/B matrices on all seven projections (r * (in + out) each); else all params.
std::vector<sharding::UnitSpec> unit_specs(const ModelConfig& cfg, int lora_rank = 0);

// Lines of per-GPU figures: full fine-tunes on several world sizes, and LoRA rank 16.
std::string memory_summary(const ModelConfig& cfg);

}  // namespace ftune::model
