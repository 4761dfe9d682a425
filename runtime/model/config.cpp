#include "runtime/model/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "common/error.h"

namespace ftune::model {
namespace {

using nlohmann::json;

struct ArchInfo {
  const char* architecture;
  const char* model_type;
};
// One place for the architectures ftune implements.
constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};

// Keys that are read below or that carry nothing ftune needs; anything else earns a warning
// so that a new feature a checkpoint relies on does not go unnoticed.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
      "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
      "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings",
      "tie_word_embeddings", "attention_bias", "mlp_bias", "sliding_window", "use_sliding_window",
      "max_window_layers", "layer_types", "bos_token_id", "eos_token_id", "pad_token_id",
      "dtype", "torch_dtype", "initializer_range", "hidden_act", "attention_dropout",
      "pretraining_tp", "use_cache", "transformers_version", "_name_or_path",
      "output_attentions", "output_hidden_states", "return_dict", "is_decoder",
      "tokenizer_class", "id2label", "label2id", "problem_type", "_from_model_config",
      "quantization_config"};  // read by runtime/peft/bnb4bit.cpp
  return keys;
}

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw Error(origin + ": " + what);
}

int64_t get_int(const json& j, const char* key, int64_t def, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number_integer()) bad(origin, std::string("'") + key + "' must be an integer");
  return j[key].get<int64_t>();
}

double get_double(const json& j, const char* key, double def, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number()) bad(origin, std::string("'") + key + "' must be a number");
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, bool def, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) bad(origin, std::string("'") + key + "' must be true or false");
  return j[key].get<bool>();
}

std::string supported_list() {
  std::string s;
  for (const auto& a : supported_architectures()) s += (s.empty() ? "" : ", ") + a;
  return s;
}

std::string read_architecture(const json& j, const std::string& origin) {
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() &&
      !j["architectures"].empty()) {
    arch = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    // Some configs omit `architectures`; the model type then names the family.
    for (const auto& a : kArchitectures)
      if (j["model_type"] == a.model_type) arch = a.architecture;
    if (arch.empty()) arch = "model_type " + j["model_type"].get<std::string>();
  } else {
    bad(origin, "neither 'architectures' nor 'model_type' is set; supported architectures: " +
                    supported_list());
  }
  const auto& sup = supported_architectures();
  if (std::find(sup.begin(), sup.end(), arch) == sup.end())
    bad(origin, "unsupported architecture '" + arch + "'; ftune supports " + supported_list());
  return arch;
}

// transformers 5 writes `rope_parameters` (with rope_theta inside); older files write a
// top-level `rope_theta` and an optional `rope_scaling`. Both are accepted; the newer wins.
RopeConfig read_rope(const json& j, const std::string& origin) {
  RopeConfig rope;
  rope.theta = get_double(j, "rope_theta", rope.theta, origin);
  const json* p = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    p = &j["rope_parameters"];
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    p = &j["rope_scaling"];
  }
  if (p == nullptr) return rope;
  rope.theta = get_double(*p, "rope_theta", rope.theta, origin);
  std::string type = "default";
  if (p->contains("rope_type")) type = (*p)["rope_type"].get<std::string>();
  else if (p->contains("type")) type = (*p)["type"].get<std::string>();
  rope.factor = get_double(*p, "factor", 1.0, origin);
  if (type == "default") {
    rope.type = RopeType::kDefault;
  } else if (type == "linear") {
    rope.type = RopeType::kLinear;
  } else if (type == "llama3") {
    rope.type = RopeType::kLlama3;
    rope.low_freq_factor = get_double(*p, "low_freq_factor", rope.low_freq_factor, origin);
    rope.high_freq_factor = get_double(*p, "high_freq_factor", rope.high_freq_factor, origin);
    rope.original_max_position_embeddings = get_int(
        *p, "original_max_position_embeddings", rope.original_max_position_embeddings, origin);
  } else {
    bad(origin, "unsupported rope_type '" + type + "'; ftune supports default, linear, llama3");
  }
  return rope;
}

std::vector<int64_t> read_ids(const json& v) {
  std::vector<int64_t> ids;
  if (v.is_number_integer()) ids.push_back(v.get<int64_t>());
  if (v.is_array())
    for (const auto& e : v) ids.push_back(e.get<int64_t>());
  return ids;
}

void warn_unknown_keys(const json& j, const std::string& origin) {
  for (const auto& [key, value] : j.items()) {
    if (known_keys().count(key) == 0)
      std::cerr << "[model] warning: " << origin << ": ignoring unknown key '" << key << "'\n";
  }
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kArchitectures) v.push_back(a.architecture);
    return v;
  }();
  return names;
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) bad(origin, "config must be a JSON object");
  ModelConfig c;
  c.raw = j;
  c.architecture = read_architecture(j, origin);
  for (const auto& a : kArchitectures)
    if (c.architecture == a.architecture) c.model_type = a.model_type;
  try {
    c.vocab_size = get_int(j, "vocab_size", c.vocab_size, origin);
    c.hidden_size = get_int(j, "hidden_size", c.hidden_size, origin);
    c.intermediate_size = get_int(j, "intermediate_size", c.intermediate_size, origin);
    c.num_layers = get_int(j, "num_hidden_layers", c.num_layers, origin);
    c.num_heads = get_int(j, "num_attention_heads", c.num_heads, origin);
    c.num_kv_heads = get_int(j, "num_key_value_heads", c.num_heads, origin);
    c.head_dim = get_int(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, origin);
    c.rms_norm_eps = get_double(j, "rms_norm_eps", c.rms_norm_eps, origin);
    c.max_position_embeddings =
        get_int(j, "max_position_embeddings", c.max_position_embeddings, origin);
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false, origin);
    c.initializer_range = get_double(j, "initializer_range", c.initializer_range, origin);
    c.rope = read_rope(j, origin);
    bool attention_bias = get_bool(j, "attention_bias", false, origin);
    // Qwen2 biases q/k/v by design (no key for it); Llama's attention_bias covers o_proj too.
    c.qkv_bias = c.model_type == "qwen2" || attention_bias;
    c.o_bias = c.model_type != "qwen2" && attention_bias;
    c.mlp_bias = get_bool(j, "mlp_bias", false, origin);
    bool window_on = c.model_type == "mistral" || get_bool(j, "use_sliding_window", false, origin);
    if (window_on && j.contains("sliding_window") && !j["sliding_window"].is_null())
      c.sliding_window = get_int(j, "sliding_window", 0, origin);
    if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
      c.bos_token_id = j["bos_token_id"].get<int64_t>();
    if (j.contains("eos_token_id")) c.eos_token_ids = read_ids(j["eos_token_id"]);
    if (j.contains("dtype") && j["dtype"].is_string()) c.dtype = j["dtype"];
    else if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.dtype = j["torch_dtype"];
    std::string act = j.value("hidden_act", std::string("silu"));
    if (act != "silu") bad(origin, "unsupported hidden_act '" + act + "'; ftune supports silu");
  } catch (const json::exception& e) {
    bad(origin, std::string("malformed value: ") + e.what());
  }
  warn_unknown_keys(j, origin);
  c.validate(origin);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json(read_json_file(path), path);
}

void ModelConfig::validate(const std::string& origin) const {
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) bad(origin, std::string("'") + key + "' must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  if (head_dim % 2 != 0) bad(origin, "'head_dim' must be even for RoPE");
  if (num_heads % num_kv_heads != 0)
    bad(origin, "num_attention_heads (" + std::to_string(num_heads) +
                    ") must be a multiple of num_key_value_heads (" +
                    std::to_string(num_kv_heads) + ")");
  if (sliding_window && *sliding_window <= 0) bad(origin, "'sliding_window' must be positive");
  dtype_bytes(dtype);  // throws on an unknown dtype
}

json ModelConfig::to_json() const {
  json j = raw.is_object() ? raw : json::object();
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["rms_norm_eps"] = rms_norm_eps;
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["initializer_range"] = initializer_range;
  if (model_type != "qwen2") j["attention_bias"] = qkv_bias;
  if (model_type == "llama") j["mlp_bias"] = mlp_bias;
  if (model_type == "mistral") j["sliding_window"] = sliding_window ? json(*sliding_window) : json();
  if (model_type == "qwen2") {
    j["use_sliding_window"] = sliding_window.has_value();
    j["sliding_window"] = sliding_window ? json(*sliding_window) : json();
  }
  j["bos_token_id"] = bos_token_id ? json(*bos_token_id) : json();
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (eos_token_ids.empty()) j["eos_token_id"] = json();
  else j["eos_token_id"] = eos_token_ids;
  j["dtype"] = dtype;
  j.erase("torch_dtype");
  json rp = {{"rope_theta", rope.theta}};
  const char* type = rope.type == RopeType::kLlama3   ? "llama3"
                     : rope.type == RopeType::kLinear ? "linear"
                                                      : "default";
  rp["rope_type"] = type;
  if (rope.type != RopeType::kDefault) rp["factor"] = rope.factor;
  if (rope.type == RopeType::kLlama3) {
    rp["low_freq_factor"] = rope.low_freq_factor;
    rp["high_freq_factor"] = rope.high_freq_factor;
    rp["original_max_position_embeddings"] = rope.original_max_position_embeddings;
  }
  // Keep the file's own form: an old-style file stays readable by older transformers.
  bool old_form = !raw.contains("rope_parameters") &&
                  (raw.contains("rope_scaling") || raw.contains("rope_theta"));
  if (old_form) {
    j["rope_theta"] = rope.theta;
    if (rope.type == RopeType::kDefault) {
      j["rope_scaling"] = json();
    } else {
      rp.erase("rope_theta");
      j["rope_scaling"] = rp;
    }
  } else {
    j.erase("rope_scaling");
    j.erase("rope_theta");
    j["rope_parameters"] = rp;
  }
  return j;
}

int64_t ParameterShape::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<ParameterShape> parameter_shapes(const ModelConfig& c) {
  std::vector<ParameterShape> out;
  const int64_t h = c.hidden_size;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "input_layernorm.weight", {h}});
    auto linear = [&](const std::string& name, int64_t out_f, int64_t in_f, bool bias) {
      out.push_back({p + name + ".weight", {out_f, in_f}});
      if (bias) out.push_back({p + name + ".bias", {out_f}});
    };
    linear("self_attn.q_proj", c.q_dim(), h, c.qkv_bias);
    linear("self_attn.k_proj", c.kv_dim(), h, c.qkv_bias);
    linear("self_attn.v_proj", c.kv_dim(), h, c.qkv_bias);
    linear("self_attn.o_proj", h, c.q_dim(), c.o_bias);
    out.push_back({p + "post_attention_layernorm.weight", {h}});
    linear("mlp.gate_proj", c.intermediate_size, h, c.mlp_bias);
    linear("mlp.up_proj", c.intermediate_size, h, c.mlp_bias);
    linear("mlp.down_proj", h, c.intermediate_size, c.mlp_bias);
  }
  out.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, h}});
  return out;
}

std::string unit_of(const std::string& name) {
  const std::string layers = "model.layers.";
  if (name.rfind(layers, 0) == 0) return name.substr(0, name.find('.', layers.size()));
  if (name.rfind("model.embed_tokens", 0) == 0) return "model.embed_tokens";
  return "head";
}

int64_t parameter_count(const ModelConfig& cfg) {
  int64_t n = 0;
  for (const auto& p : parameter_shapes(cfg)) n += p.numel();
  return n;
}

namespace {
constexpr std::pair<st::DType, const char*> kWeightDTypes[] = {
    {st::DType::F32, "float32"}, {st::DType::BF16, "bfloat16"}, {st::DType::F16, "float16"}};
}  // namespace

st::DType parse_hf_dtype(const std::string& dtype) {
  for (const auto& [st_dtype, name] : kWeightDTypes)
    if (dtype == name) return st_dtype;
  throw Error("unsupported dtype '" + dtype + "'; ftune supports float32, bfloat16, float16");
}

const char* hf_dtype_name(st::DType dtype) {
  for (const auto& [st_dtype, name] : kWeightDTypes)
    if (st_dtype == dtype) return name;
  throw Error(std::string("dtype ") + st::dtype_name(dtype) + " is not a weight dtype");
}

size_t dtype_bytes(const std::string& dtype) { return st::dtype_size(parse_hf_dtype(dtype)); }

ModelConfig load_model_dir_config(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(path)) throw Error(dir + ": no config.json (is this a Hugging Face model dir?)");
  ModelConfig cfg = ModelConfig::from_file(path);
  std::string gen_path = (fs::path(dir) / "generation_config.json").string();
  if (fs::exists(gen_path)) {
    json g = read_json_file(gen_path);
    if (g.contains("eos_token_id") && !g["eos_token_id"].is_null())
      cfg.eos_token_ids = read_ids(g["eos_token_id"]);
    if (g.contains("bos_token_id") && g["bos_token_id"].is_number_integer())
      cfg.bos_token_id = g["bos_token_id"].get<int64_t>();
  }
  return cfg;
}

}  // namespace ftune::model
