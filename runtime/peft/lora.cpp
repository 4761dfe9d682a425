#include "runtime/peft/lora.h"

#include "runtime/peft/dora.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "common/text.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/checkpoint/safetensors.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace ftune::peft {

double LoraOptions::scaling() const {
  return use_rslora ? alpha / std::sqrt(double(r)) : alpha / double(r);
}

LoraAdapter::LoraAdapter(const model::LinearImpl& base, const LoraOptions& o, at::Generator& gen)
    : scaling_(o.scaling()), dropout_(o.dropout) {
  // Adapters stay float32 (the optimizer's dtype) on the base's device; forward casts them to
  // the compute dtype, so their gradients arrive in float32. A base on the meta device (about to
  // be sharded) gets CPU adapters.
  at::Device device = base.weight.is_meta() ? at::Device(at::kCPU) : base.weight.device();
  const auto opts = at::TensorOptions(at::kFloat).device(device);
  // nn.Linear's default init (kaiming_uniform with a = sqrt(5)): bound = 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(double(base.in_features));
  at::Tensor a = at::empty({o.r, base.in_features}, at::kFloat).uniform_(-bound, bound, gen);
  lora_A = register_parameter("lora_A", a.to(device));
  lora_B = register_parameter("lora_B", at::zeros({base.out_features, o.r}, opts));
}

at::Tensor LoraAdapter::forward(const at::Tensor& x, const at::Tensor& base_out,
                                const model::LinearImpl&) {
  at::Tensor h = dropout_ > 0 && is_training() ? at::dropout(x, dropout_, true) : x;
  const auto dtype = x.scalar_type();
  return base_out + at::linear(at::linear(h, lora_A.to(dtype)), lora_B.to(dtype)) * scaling_;
}

namespace {
bool pattern_matches(const std::string& key, const std::string& name) {
  if (name == key) return true;
  return name.size() > key.size() && name.compare(name.size() - key.size(), key.size(), key) == 0 &&
         name[name.size() - key.size() - 1] == '.';
}
}  // namespace

LoraOptions LoraOptions::for_module(const std::string& name) const {
  LoraOptions o = *this;
  for (const auto& [key, r_] : rank_pattern)
    if (pattern_matches(key, name)) {
      o.r = r_;
      break;
    }
  for (const auto& [key, a] : alpha_pattern)
    if (pattern_matches(key, name)) {
      o.alpha = a;
      break;
    }
  return o;
}

namespace {
const std::vector<std::string>& all_projections() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::string last_part(const std::string& name) { return name.substr(name.rfind('.') + 1); }
}  // namespace

std::vector<std::string> LoraOptions::resolved_targets() const {
  std::vector<std::string> out;
  for (const auto& t : target_modules) {
    if (t == "all-linear") return all_projections();
    bool known = false;
    for (const auto& p : all_projections()) known |= p == t;
    if (!known) {
      std::string hint = closest_match(t, all_projections());
      throw Error("lora.target_modules: '" + t + "' is not a module of this model" +
                  (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                  "; choose among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
                  "or all-linear");
    }
    out.push_back(t);
  }
  return out;
}

std::vector<std::string> attach_lora(model::CausalLM& model, const LoraOptions& options,
                                     uint64_t seed) {
  if (options.r <= 0) throw Error("lora.r must be positive (got " + std::to_string(options.r) + ")");
  const std::vector<std::string> resolved = options.resolved_targets();
  const std::set<std::string> targets(resolved.begin(), resolved.end());
  for (auto& p : model.parameters()) p.requires_grad_(false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> attached;
  for (auto& [name, linear] : model.named_linears()) {
    if (!targets.count(last_part(name))) continue;
    const LoraOptions o = options.for_module(name);
    std::shared_ptr<LoraAdapter> adapter = o.use_dora ? std::make_shared<DoraAdapter>(*linear, o, gen)
                                                      : std::make_shared<LoraAdapter>(*linear, o, gen);
    for (auto& p : adapter->parameters()) p.requires_grad_(true);
    linear->set_adapter(adapter, "lora");
    attached.push_back(name);
  }
  return attached;
}

std::string peft_key(const std::string& name) {
  for (const char* marker : {".lora.", ".ia3."}) {
    const size_t at = name.find(marker);
    if (at == std::string::npos) continue;
    const std::string leaf = name.substr(at + std::strlen(marker));  // lora_A, ia3_l, ...
    // nn.Linear submodules carry ".weight"; plain parameters (DoRA's m, IA³'s l) do not.
    const bool linear = leaf == "lora_A" || leaf == "lora_B";
    return "base_model.model." + name.substr(0, at) + "." + leaf + (linear ? ".weight" : "");
  }
  FTUNE_CHECK(false, "not an adapter parameter: " + name);
  return {};
}

size_t train_biases(model::CausalLM& model, const std::string& bias) {
  if (bias == "none") return 0;
  FTUNE_CHECK(bias == "all" || bias == "lora_only", "lora.bias = " + bias);
  size_t n = 0;
  for (auto& [name, linear] : model.named_linears()) {
    if (!linear->bias.defined() || (bias == "lora_only" && !linear->adapter())) continue;
    linear->bias.set_data(linear->bias.detach().to(at::kFloat));
    linear->bias.requires_grad_(true);
    ++n;
  }
  return n;
}

std::string peft_bias_key(const std::string& name, bool adapted) {
  const std::string suffix = ".bias";
  FTUNE_CHECK(name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0,
              "not a bias: " + name);
  const std::string module = name.substr(0, name.size() - suffix.size());
  return "base_model.model." + module + (adapted ? ".base_layer.bias" : ".bias");
}

namespace {

// Copies entry `key` of an adapter file into dst, refusing another shape; `what` says where
// the model's shape comes from.
void copy_entry(const st::SafetensorsFile& file, const st::TensorInfo& info, const std::string& key,
                at::Tensor dst, const std::string& what) {
  at::Tensor src = model::view_tensor(file, info);
  if (src.sizes() != dst.sizes())
    throw Error(file.path() + ": " + key + " has shape " + c10::str(src.sizes()) + " but " + what + " " +
                c10::str(dst.sizes()));
  dst.copy_(src);
}

// The biases an adapter directory trained (PEFT's bias = all | lora_only) into their modules.
void load_adapter_biases(model::CausalLM& model, const st::SafetensorsFile& file) {
  for (auto& [name, linear] : model.named_linears()) {
    if (!linear->bias.defined()) continue;
    const std::string key = peft_bias_key(name + ".bias", linear->adapter() != nullptr);
    if (const st::TensorInfo* info = file.find(key)) copy_entry(file, *info, key, linear->bias, "the model's is");
  }
}

}  // namespace

nlohmann::ordered_json read_adapter_config(const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  std::ifstream in(config_path);
  if (!in) throw Error(config_path + ": cannot read (is " + dir + " a PEFT adapter directory?)");
  try {
    return nlohmann::ordered_json::parse(in);  // ordered: the first matching pattern wins
  } catch (const std::exception& e) {
    throw Error(config_path + ": not valid JSON: " + e.what());
  }
}

void load_adapter_tensors(model::CausalLM& model, const std::string& dir, const std::string& what) {
  auto file = st::SafetensorsFile::open(dir + "/adapter_model.safetensors");
  at::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (name.find(".lora.") == std::string::npos && name.find(".ia3.") == std::string::npos) continue;
    const std::string key = peft_key(name);
    const st::TensorInfo* info = file->find(key);
    if (info == nullptr) throw Error(file->path() + ": no tensor " + key);
    copy_entry(*file, *info, key, item.value(), what + " and the model give");
  }
  const nlohmann::ordered_json c = read_adapter_config(dir);
  if (c.value("bias", "none") != "none") load_adapter_biases(model, *file);
}

LoraOptions lora_options_of(const nlohmann::ordered_json& c) {
  LoraOptions o;
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (!c.contains(key) || c[key].is_null()) continue;
    if (!c[key].is_object()) throw Error(std::string("adapter_config.json: ") + key + " must be an object");
    for (const auto& [k, v] : c[key].items()) {
      if (key[0] == 'r') o.rank_pattern.emplace_back(k, v.get<int64_t>());
      else o.alpha_pattern.emplace_back(k, v.get<double>());
    }
  }
  o.r = c.value("r", int64_t(8));
  o.alpha = c.value("lora_alpha", 8.0);
  o.use_rslora = c.value("use_rslora", false);
  o.use_dora = c.value("use_dora", false);
  if (c.contains("target_modules") && c["target_modules"].is_array())
    o.target_modules = c["target_modules"].get<std::vector<std::string>>();
  return o;
}

void load_lora_adapter(model::CausalLM& model, const std::string& dir) {
  const nlohmann::ordered_json c = read_adapter_config(dir);
  if (c.value("peft_type", "") != "LORA")
    throw Error(dir + "/adapter_config.json: peft_type is '" + c.value("peft_type", "") + "'; expected LORA");
  const LoraOptions o = lora_options_of(c);
  attach_lora(model, o, 0);
  load_adapter_tensors(model, dir, "r = " + std::to_string(o.r));
}

size_t merge_lora(model::CausalLM& model) {
  at::NoGradGuard no_grad;
  size_t merged = 0;
  for (auto& [name, linear] : model.named_linears()) {
    auto lora = std::dynamic_pointer_cast<LoraAdapter>(linear->adapter());
    if (!lora) continue;
    if (auto dora = std::dynamic_pointer_cast<DoraAdapter>(lora)) {
      merge_dora(*linear, *dora);
      ++merged;
      continue;
    }
    at::Tensor delta = at::matmul(lora->lora_B.to(at::kFloat), lora->lora_A.to(at::kFloat)) * lora->scaling();
    linear->weight.copy_((linear->weight.to(at::kFloat) + delta.to(linear->weight.device())));
    lora->lora_B.zero_();
    ++merged;
  }
  return merged;
}

std::string trainable_summary(model::CausalLM& model) {
  int64_t trainable = 0, all = 0;
  for (const auto& p : model.parameters()) {
    all += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.4f", all ? 100.0 * double(trainable) / double(all) : 0.0);
  return "trainable params: " + with_commas(trainable) + " || all params: " + with_commas(all) +
         " || trainable%: " + pct;
}

}  // namespace ftune::peft
