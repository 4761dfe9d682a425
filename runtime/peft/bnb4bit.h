// Checkpoints already in 4 bits, as bitsandbytes saves them (the `*-bnb-4bit` repositories):
// config.json has quantization_config {quant_method: bitsandbytes, load_in_4bit: true}, and each
// projection's `weight` is packed uint8 [numel / 2, 1] beside its quant_state tensors:
// `weight.absmax` (uint8 with double quantisation, else float32), `weight.quant_map` [16],
// `weight.nested_absmax`, `weight.nested_quant_map` [256], and
// `weight.quant_state.bitsandbytes__nf4`: the JSON of quant_type, blocksize, dtype, shape,
// nested_blocksize and nested_offset, as uint8 bytes.
#pragma once

#include <memory>
#include <string>

#include "runtime/model/llama.h"

namespace ftune::peft {

// Whether dir's config.json describes a bitsandbytes 4-bit checkpoint.
bool is_bnb_4bit(const std::string& dir);

// Loads a bitsandbytes 4-bit directory without dequantising: every projection holds its NF4
// form (an Nf4Base adapter, freed weight), the other tensors are loaded in `options`' dtype.
// Throws ftune::Error naming the tensor for fp4, a missing quant_state or a shape mismatch.
std::shared_ptr<model::CausalLM> load_bnb_4bit(const std::string& dir, const at::TensorOptions& options);

// The base model of a run or of `generate`: load_bnb_4bit for a bitsandbytes 4-bit directory,
// else model::load_model.
std::shared_ptr<model::CausalLM> load_base(const std::string& dir, const at::TensorOptions& options);

}  // namespace ftune::peft
