// The shape of a Llama-family model, read from a Hugging Face `config.json`. Torch-free, so the
// launcher can describe a 70B model (parameter count, bytes) from its config alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/safetensors.h"

namespace ftune::model {

// How RoPE frequencies are stretched for long contexts (HF `rope_parameters.rope_type`).
enum class RopeType { kDefault, kLinear, kLlama3 };

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double factor = 1.0;                         // linear and llama3
  double low_freq_factor = 1.0;                // llama3
  double high_freq_factor = 4.0;               // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3 [tokens]
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // HF `architectures[0]`
  std::string model_type = "llama";
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_layers = 32;        // num_hidden_layers
  int64_t num_heads = 32;         // num_attention_heads
  int64_t num_kv_heads = 32;      // num_key_value_heads; < num_heads means grouped-query attention
  int64_t head_dim = 128;         // [channels per head]
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  int64_t max_position_embeddings = 4096;  // [tokens]
  bool tie_word_embeddings = false;
  bool qkv_bias = false;   // Qwen2 always; Llama when attention_bias
  bool o_bias = false;     // Llama attention_bias also biases o_proj
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // Mistral [tokens]; none = full causal attention
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string dtype = "float32";  // the dtype the weights are stored in (HF `dtype`/`torch_dtype`)
  double initializer_range = 0.02;

  // The original JSON, kept so a re-saved config.json keeps the keys ftune does not read.
  nlohmann::json raw = nlohmann::json::object();

  // Reads config.json; unsupported architectures and bad values throw ftune::Error naming the
  // file; unknown keys print a warning and are ignored.
  static ModelConfig from_file(const std::string& path);
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
  // The HF config.json for this config (raw keys preserved, ftune's values on top).
  nlohmann::json to_json() const;

  // Rules that span fields (heads divide, dims positive); throws ftune::Error citing origin.
  void validate(const std::string& origin) const;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// The architectures ftune implements, for messages.
const std::vector<std::string>& supported_architectures();

// Named shapes for `ftune model init`: tiny ones for tests and the real Llama 3 ones.
ModelConfig preset(const std::string& name);
const std::vector<std::string>& preset_names();

// Parameter counts computed from the shapes alone (no tensors), per tensor name as in HF.
struct ParameterShape {
  std::string name;  // model.layers.0.self_attn.q_proj.weight
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::vector<ParameterShape> parameter_shapes(const ModelConfig& cfg);

// The sharding unit a parameter belongs to, by its HF name: "model.embed_tokens",
// "model.layers.<i>" (adapter parameters inside a layer too) or "head" (final norm, untied
// lm_head). The one rule that groups tensors into units: CausalLM::parameter_units() and the
// memory estimate both use it. A tied head has no tensor of its own: it is the embeddings'.
std::string unit_of(const std::string& param_name);
int64_t parameter_count(const ModelConfig& cfg);

// The weight dtypes ftune stores, by their config.json names. The one place that knows those
// names: the LibTorch side maps the st::DType on (runtime/checkpoint/hf_checkpoint.cpp).
st::DType parse_hf_dtype(const std::string& dtype);  // "bfloat16" -> BF16; throws ftune::Error
const char* hf_dtype_name(st::DType dtype);           // BF16 -> "bfloat16"; throws if not a weight dtype

// Bytes per element of an HF dtype name ("bfloat16" -> 2); throws ftune::Error otherwise.
size_t dtype_bytes(const std::string& dtype);

// Also reads generation_config.json beside config.json when present: its eos/bos ids win, as
// in transformers' generate().
ModelConfig load_model_dir_config(const std::string& dir);

}  // namespace ftune::model
