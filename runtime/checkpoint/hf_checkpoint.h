// Hugging Face model directories <-> CausalLM, on top of ftune::st (safetensors).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "runtime/checkpoint/safetensors.h"
#include "runtime/model/llama.h"

namespace ftune::model {

// The one mapping between safetensors dtypes, LibTorch dtypes and HF dtype names.
at::ScalarType to_scalar_type(st::DType dtype);  // throws ftune::Error for unsupported ones
st::DType to_st_dtype(at::ScalarType dtype);
at::ScalarType parse_scalar_type(const std::string& hf_name);  // "bfloat16" -> at::kBFloat16
std::string hf_dtype_name(at::ScalarType dtype);                // at::kBFloat16 -> "bfloat16"

// A tensor viewing one entry's bytes in `file` (no copy: valid while the file stays open; copy_
// or clone it to keep the values).
at::Tensor view_tensor(const st::SafetensorsFile& file, const st::TensorInfo& info);

// Copies every base tensor of `model` from the checkpoint in `dir` (model.safetensors or an
// index with shards), converting dtypes. Throws one ftune::Error naming every missing tensor,
// or every tensor whose shape differs. A tied head needs no `lm_head.weight` (and ignores one
// if present); other extra tensors are reported on stderr and skipped.
void load_weights(CausalLM& model, const std::string& dir);

// Reads config.json (+ generation_config.json), builds the model with `options` and loads it.
std::shared_ptr<CausalLM> load_model(const std::string& dir, const torch::TensorOptions& options);

struct SaveOptions {
  uint64_t max_shard_bytes = 5'000'000'000ULL;  // [bytes] per safetensors shard
  std::string dtype;          // HF name to store in; "" = the model's parameter dtype
  std::string tokenizer_dir;  // copy tokenizer/generation files from here; "" = none
};

// Writes `dir` in HF layout: safetensors (sharded above max_shard_bytes, with index), config.json
// (model.config() with the stored dtype) and, from tokenizer_dir when present, tokenizer.json,
// tokenizer_config.json, special_tokens_map.json and generation_config.json.
void save_model(CausalLM& model, const std::string& dir, const SaveOptions& options = {});

// config.json (cfg with `dtype` as the stored dtype) and the tokenizer/generation files from
// tokenizer_dir: what save_model writes beside the weights, for exports that write the weights
// themselves (unit by unit).
void write_model_files(const ModelConfig& cfg, at::ScalarType dtype, const std::string& tokenizer_dir,
                       const std::string& dir);

// Files copied beside the weights on save.
const std::vector<std::string>& tokenizer_files();

}  // namespace ftune::model
