// llama3 RoPE scaling in GGUF files: llama.cpp's converter stores no rope_scaling keys for it but a
// `rope_freqs.weight` tensor of per-frequency factors (head_dim / 2 floats). The exporter computes
// that tensor from the config; the importer finds the parameters that reproduce it.
#pragma once

#include <optional>
#include <vector>

#include "runtime/model/config.h"

namespace ftune::model {

// The factors llama.cpp's LlamaModel.generate_extra_tensors writes for `rope` (type llama3),
// with theta and head_dim from the model.
std::vector<float> llama3_rope_factors(const RopeConfig& rope, int64_t head_dim);

// The llama3 parameters whose factors equal `factors` (to 1e-5 relative), searched over the
// values released Llama 3.x models use (factor = the largest entry; low/high frequency factors
// and original context among the usual ones); none when no candidate reproduces them.
std::optional<RopeConfig> infer_llama3_rope(const std::vector<float>& factors, double theta, int64_t head_dim);

}  // namespace ftune::model
