// Named model shapes for `ftune model init`. The real ones copy the published Llama 3.x
// config.json values; the tiny ones keep tests and the demo fast on a laptop CPU.
#include <functional>
#include <map>

#include "common/error.h"
#include "common/text.h"
#include "runtime/model/config.h"

namespace ftune::model {
namespace {

ModelConfig tiny_base() {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 512;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.dtype = "float32";
  return c;
}

// Llama 3.x shapes; factor/original context per the published configs.
ModelConfig llama3(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, double factor,
                   bool tied) {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = 8;
  c.head_dim = hidden / heads;
  c.rms_norm_eps = 1e-5;
  c.rope = {RopeType::kLlama3, 500000.0, factor, 1.0, 4.0, 8192};
  c.max_position_embeddings = 131072;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.dtype = "bfloat16";
  return c;
}

const std::map<std::string, std::function<ModelConfig()>>& presets() {
  static const std::map<std::string, std::function<ModelConfig()>> table = {
      {"tiny-llama", [] { return tiny_base(); }},
      {"tiny-llama3",
       [] {
         ModelConfig c = tiny_base();
         c.vocab_size = 512;
         c.num_kv_heads = 1;
         c.rope = {RopeType::kLlama3, 500000.0, 8.0, 1.0, 4.0, 64};
         c.tie_word_embeddings = true;
         return c;
       }},
      {"tiny-qwen2",
       [] {
         ModelConfig c = tiny_base();
         c.architecture = "Qwen2ForCausalLM";
         c.model_type = "qwen2";
         c.qkv_bias = true;
         c.rope.theta = 1000000.0;
         c.rms_norm_eps = 1e-6;
         return c;
       }},
      {"tiny-mistral",
       [] {
         ModelConfig c = tiny_base();
         c.architecture = "MistralForCausalLM";
         c.model_type = "mistral";
         c.sliding_window = 16;
         return c;
       }},
      {"llama-3.2-1b", [] { return llama3(2048, 8192, 16, 32, 32.0, true); }},
      {"llama-3.2-3b", [] { return llama3(3072, 8192, 28, 24, 32.0, true); }},
      {"llama-3.1-8b", [] { return llama3(4096, 14336, 32, 32, 8.0, false); }},
      {"llama-3.1-70b", [] { return llama3(8192, 28672, 80, 64, 8.0, false); }},
      {"llama-3.1-405b", [] { return llama3(16384, 53248, 126, 128, 8.0, false); }},
  };
  return table;
}

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [name, make] : presets()) v.push_back(name);
    return v;
  }();
  return names;
}

ModelConfig preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string list;
    for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
    std::string hint = closest_match(name, preset_names());
    throw Error("unknown model preset '" + name + "'" +
                (hint.empty() ? "" : " (did you mean '" + hint + "'?)") + "; presets: " + list);
  }
  ModelConfig c = it->second();
  c.raw = nlohmann::json::object();
  c.validate("preset " + name);
  return c;
}

}  // namespace ftune::model
