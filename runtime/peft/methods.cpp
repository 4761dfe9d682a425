#include "runtime/peft/methods.h"

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/peft/dora.h"
#include "runtime/peft/qlora.h"

namespace ftune::peft {
namespace {

namespace fs = std::filesystem;

bool lora_family(const std::string& m) { return m == "lora" || m == "dora" || m == "qlora"; }

bool is_adapter_parameter(const std::string& name) {
  return name.find(".lora.") != std::string::npos || name.find(".ia3.") != std::string::npos;
}

using Json = nlohmann::ordered_json;  // PEFT's patterns are ordered: the first match wins

Json pattern_json(const std::vector<std::pair<std::string, double>>& p) {
  Json j = Json::object();
  for (const auto& [k, v] : p) j[k] = v;
  return j;
}

Json lora_config(const AdapterSpec& s) {
  Json rank = Json::object();
  for (const auto& [k, r] : s.lora.rank_pattern) rank[k] = r;
  return {{"peft_type", "LORA"}, {"rank_pattern", rank}, {"alpha_pattern", pattern_json(s.lora.alpha_pattern)}, {"r", s.lora.r}, {"lora_alpha", s.lora.alpha},
          {"lora_dropout", s.lora.dropout}, {"target_modules", s.lora.resolved_targets()},
          {"bias", s.bias}, {"use_rslora", s.lora.use_rslora}, {"use_dora", s.lora.use_dora},
          {"fan_in_fan_out", false}};
}

Json ia3_config(const AdapterSpec& s) {
  LoraOptions names;
  names.target_modules = s.ia3.target_modules;
  return {{"peft_type", "IA3"}, {"target_modules", names.resolved_targets()},
          {"feedforward_modules", s.ia3.feedforward_modules}, {"fan_in_fan_out", false},
          {"init_ia3_weights", true}};
}

std::vector<std::string> string_list(const Json& c, const char* key, const std::string& path) {
  if (!c.contains(key) || c[key].is_null()) return {};
  if (c[key].is_string()) {
    throw Error(path + ": " + key + " is a regular expression ('" + c[key].get<std::string>() +
                "'); ftune reads a list of module names: write them as a list");
  }
  return c[key].get<std::vector<std::string>>();
}

void load_prefix_tensor(model::CausalLM& model, const std::string& dir) {
  auto file = st::SafetensorsFile::open(dir + "/adapter_model.safetensors");
  const st::TensorInfo* info = file->find("prompt_embeddings");
  if (info == nullptr) throw Error(file->path() + ": no tensor prompt_embeddings");
  load_prompt_embeddings(model, model::view_tensor(*file, *info).to(at::kFloat), file->path());
}

}  // namespace

void AdapterSpec::check() const {
  if (method == "ia3") return ia3.check();
  if (method == "prefix") {
    if (prefix.num_virtual_tokens < 1) throw Error("prefix.num_virtual_tokens must be at least 1");
    return;
  }
  if (!lora_family(method))
    throw Error("method.name = '" + method + "' attaches no adapters (choose lora, dora, qlora, ia3 or prefix)");
  lora.resolved_targets();
}

size_t attach_adapters(model::CausalLM& model, const AdapterSpec& given, uint64_t seed) {
  const AdapterSpec spec = given.init_from.empty() ? given : continued_spec(given);
  spec.check();
  if (spec.method != "qlora" && spec.method != "prefix" && has_nf4_base(model))
    throw Error("the base is a 4-bit (bitsandbytes NF4) checkpoint: method.name = " + spec.method +
                " needs its weights; use method.name = qlora");
  size_t biases = 0;
  if (spec.method == "ia3") {
    attach_ia3(model, spec.ia3);
  } else if (spec.method == "prefix") {
    attach_prefix(model, spec.prefix, seed);
    if (!spec.init_from.empty()) load_prefix_tensor(model, spec.init_from);
    return 0;
  } else {
    LoraOptions lo = spec.lora;
    lo.use_dora = lo.use_dora || spec.method == "dora";
    if (spec.method == "qlora") attach_qlora(model, lo, spec.nf4, seed);
    else attach_lora(model, lo, seed);
    biases = train_biases(model, spec.bias);
  }
  if (!spec.init_from.empty()) load_adapter_tensors(model, spec.init_from, "its adapter_config.json");
  return biases;
}

AdapterSpec continued_spec(const AdapterSpec& spec) {
  const AdapterSpec found = read_adapter_spec(spec.init_from);
  const bool fits = spec.method == "ia3" || spec.method == "prefix" ? found.method == spec.method
                    : spec.method == "dora" ? found.method == "dora"
                                            : found.method == "lora";
  if (!fits)
    throw Error("method.adapter = " + spec.init_from + " holds a " + found.method + " adapter, but method.name = " +
                spec.method + "; set method.name = " + found.method);
  AdapterSpec s = spec;
  s.lora = found.lora;
  s.lora.dropout = spec.lora.dropout;  // a training setting, not part of the adapter
  s.bias = found.bias;
  s.ia3 = found.ia3;
  s.prefix = found.prefix;
  return s;
}

void write_adapter(model::CausalLM& model, const AdapterSpec& spec, const std::string& dir,
                   const std::string& base_model_path) {
  fs::create_directories(dir);
  if (spec.method == "prefix") {
    const at::Tensor e = prompt_embeddings(model);
    st::write_file(dir + "/adapter_model.safetensors",
                   {{"prompt_embeddings", st::DType::F32, e.sizes().vec(), e.data_ptr()}}, {{"format", "pt"}});
    Json c = prefix_config(model, spec.prefix);
    c["task_type"] = "CAUSAL_LM";
    c["inference_mode"] = true;
    c["base_model_name_or_path"] = base_model_path;
    std::ofstream(dir + "/adapter_config.json") << c.dump(2) << "\n";
    return;
  }
  std::vector<at::Tensor> keep;
  std::vector<st::TensorView> views;
  auto add = [&](const std::string& key, const at::Tensor& t) {
    keep.push_back(t.detach().to(at::kCPU, at::kFloat).contiguous());
    views.push_back({key, st::DType::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  };
  for (const auto& item : model.named_parameters())
    if (is_adapter_parameter(item.key())) add(peft_key(item.key()), item.value());
  for (auto& [name, linear] : model.named_linears())
    if (linear->bias.defined() && linear->bias.requires_grad())
      add(peft_bias_key(name + ".bias", linear->adapter() != nullptr), linear->bias);
  st::write_file(dir + "/adapter_model.safetensors", views, {{"format", "pt"}});
  AdapterSpec s = spec;
  s.lora.use_dora = s.lora.use_dora || s.method == "dora";
  Json c = s.method == "ia3" ? ia3_config(s) : lora_config(s);
  c["task_type"] = "CAUSAL_LM";
  c["inference_mode"] = true;
  c["modules_to_save"] = nullptr;
  c["base_model_name_or_path"] = base_model_path;
  std::ofstream(dir + "/adapter_config.json") << c.dump(2) << "\n";
}

AdapterSpec read_adapter_spec(const std::string& dir) {
  const Json c = read_adapter_config(dir);
  const std::string path = dir + "/adapter_config.json";
  const std::string type = c.value("peft_type", "");
  AdapterSpec s;
  if (type == "LORA") {
    s.lora = lora_options_of(c);
    s.method = s.lora.use_dora ? "dora" : "lora";
    s.bias = c.value("bias", "none");
  } else if (type == "IA3") {
    s.method = "ia3";
    s.ia3.target_modules = string_list(c, "target_modules", path);
    s.ia3.feedforward_modules = string_list(c, "feedforward_modules", path);
  } else if (type == "PREFIX_TUNING") {
    // With prefix_projection PEFT saves the MLP's output, so the file is the prefix either way.
    s.method = "prefix";
    s.prefix.num_virtual_tokens = c.value("num_virtual_tokens", int64_t(0));
    if (c.value("num_transformer_submodules", int64_t(1)) != 1)
      throw Error(path + ": num_transformer_submodules = " + std::to_string(c.value("num_transformer_submodules", 1)) +
                  "; a decoder-only model has 1");
  } else {
    throw Error(path + ": peft_type '" + type + "' is not one ftune loads (LORA, including DoRA; IA3; "
                "PREFIX_TUNING)");
  }
  return s;
}

AdapterSpec load_adapter(model::CausalLM& model, const std::string& dir) {
  AdapterSpec s = read_adapter_spec(dir);
  if (s.method == "prefix") {
    attach_prefix(model, s.prefix, 0);
    load_prefix_tensor(model, dir);
    return s;
  }
  if (has_nf4_base(model)) {
    // A 4-bit base (a bnb-4bit checkpoint): LoRA runs on it as in QLoRA training.
    if (s.method != "lora")
      throw Error(dir + ": a " + s.method + " adapter needs the base's weights, but the base is in 4 bits; "
                  "load a bf16 or float32 base");
    s.method = "qlora";
    attach_qlora(model, s.lora, {}, 0);
  } else if (s.method == "ia3") {
    attach_ia3(model, s.ia3);
  } else {
    attach_lora(model, s.lora, 0);
  }
  load_adapter_tensors(model, dir, s.method == "ia3" ? "IA3" : "r = " + std::to_string(s.lora.r));
  return s;
}

size_t merge_adapters(model::CausalLM& model) {
  if (model.prefix_tokens() > 0)
    throw Error("prefix tuning cannot be merged: its virtual keys and values are extra tokens every layer "
                "attends to, not a change of any weight, so there is nothing to fold into the base; run it "
                "unmerged with `ftune generate --adapter DIR`");
  for (auto& [name, linear] : model.named_linears())
    if (std::dynamic_pointer_cast<Nf4Base>(linear->adapter()) || std::dynamic_pointer_cast<QLoraAdapter>(linear->adapter()))
      throw Error("cannot merge into a 4-bit base (" + name + "): load the base in bf16 or float32 and merge there");
  return merge_lora(model) + merge_ia3(model);
}

}  // namespace ftune::peft
