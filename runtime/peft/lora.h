// LoRA (Hu et al. 2021) as PEFT defines it: y = W x + s * B(A(dropout(x))), s = alpha / r
// (rsLoRA: alpha / sqrt(r)); A [r, in] Kaiming-uniform as nn.Linear initialises it, B [out, r]
// zero, so training starts from the base model. Only the adapters train.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model/llama.h"

namespace ftune::peft {

struct LoraOptions {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.0;
  bool use_rslora = false;
  // HF module names' last part (q_proj, ..., down_proj), or {"all-linear"}: the seven projections.
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  bool use_dora = false;  // DoRA (runtime/peft/dora.h): a learned magnitude per output row
  // PEFT's rank_pattern / alpha_pattern: a key ("down_proj", "layers.0.self_attn.q_proj")
  // matches a module whose name is the key or ends with "." + key; the first match wins.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  double scaling() const;
  // These options with r and alpha of module `name` ("model.layers.0.mlp.down_proj").
  LoraOptions for_module(const std::string& name) const;
  // target_modules with "all-linear" expanded to the seven projections; unknown names throw
  // ftune::Error naming the closest module.
  std::vector<std::string> resolved_targets() const;
};

class LoraAdapter : public model::LinearAdapter {
 public:
  LoraAdapter(const model::LinearImpl& base, const LoraOptions& options, at::Generator& gen);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base_out,
                     const model::LinearImpl& base) override;
  at::Tensor lora_A, lora_B;  // [r, in], [out, r]
  double scaling() const { return scaling_; }
  double dropout() const { return dropout_; }

 private:
  double scaling_, dropout_;
};

// Freezes every model parameter, then attaches a LoRA adapter (named "lora", so parameters are
// `<linear>.lora.lora_A`) to each targeted projection. Returns the targeted module names;
// throws ftune::Error when a target matches no module, naming the model's module names.
std::vector<std::string> attach_lora(model::CausalLM& model, const LoraOptions& options,
                                     uint64_t seed);

// PEFT's key for one of our adapter parameters: "model.layers.0.self_attn.q_proj.lora.lora_A"
// -> "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"; DoRA's magnitude
// ("...q_proj.lora.lora_magnitude_vector") has no ".weight"; IA³'s "...k_proj.ia3.ia3_l" ->
// "base_model.model....k_proj.ia3_l".
std::string peft_key(const std::string& ftune_name);

// Lets the biases PEFT's `bias` option names train beside the adapters: "none", "all", or
// "lora_only" (those of the adapted projections); in float32 (the linear casts them to its
// input's dtype). Returns the number of bias tensors that train.
size_t train_biases(model::CausalLM& model, const std::string& bias);

// PEFT's key for a bias trained beside the adapters: "model.layers.0.self_attn.q_proj.bias" ->
// "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias" when q_proj has an
// adapter (PEFT wraps it as base_layer), else "...k_proj.bias".
std::string peft_bias_key(const std::string& ftune_name, bool adapted);

// adapter_config.json of a PEFT adapter directory; throws ftune::Error naming the file.
nlohmann::ordered_json read_adapter_config(const std::string& dir);
// The LoRA/DoRA options an adapter_config.json (peft_type LORA) gives.
LoraOptions lora_options_of(const nlohmann::ordered_json& adapter_config);
// Copies every attached adapter parameter (LoRA, DoRA, IA³) and the trained biases from
// dir/adapter_model.safetensors; `what` describes the config in shape errors ("r = 8").
void load_adapter_tensors(model::CausalLM& model, const std::string& dir, const std::string& what);

// Attaches the adapter in a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)
// to model and loads its weights. Throws ftune::Error naming the file and what is wrong.
void load_lora_adapter(model::CausalLM& model, const std::string& dir);

// Folds every LoRA adapter into its base weight (W += s * B A, in W's dtype; DoRA as
// merge_dora) and zeroes B, so
// the model computes the same function and base_parameters() hold the merged weights.
// Returns the number of projections merged.
size_t merge_lora(model::CausalLM& model);

// "trainable params: 1,234 || all params: 5,678 || trainable%: 21.7326", as PEFT prints it.
std::string trainable_summary(model::CausalLM& model);

}  // namespace ftune::peft
