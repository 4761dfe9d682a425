#include "runtime/peft/ia3.h"

#include <set>

#include "common/error.h"
#include "runtime/peft/lora.h"

namespace ftune::peft {
namespace {
std::string last_part(const std::string& name) { return name.substr(name.rfind('.') + 1); }

// The linear's bias in x's dtype (a bias trained beside an adapter is float32).
std::optional<at::Tensor> bias_like(const model::LinearImpl& base, const at::Tensor& x) {
  if (!base.bias.defined()) return std::nullopt;
  return base.bias.scalar_type() == x.scalar_type() ? base.bias : base.bias.to(x.scalar_type());
}
}  // namespace

void Ia3Options::check() const {
  LoraOptions names;  // the one list of projection names and its message
  names.target_modules = target_modules;
  std::vector<std::string> targets;
  try {
    targets = names.resolved_targets();
  } catch (const Error& e) {
    std::string m = e.what();
    throw Error("ia3" + m.substr(m.find('.')));  // "lora.target_modules: ..." -> "ia3.target_modules: ..."
  }
  const std::set<std::string> t(targets.begin(), targets.end());
  for (const auto& f : feedforward_modules)
    if (!t.count(f))
      throw Error("ia3.feedforward_modules: '" + f + "' is not in ia3.target_modules; a feed-forward "
                  "module must also be a target");
}

Ia3Adapter::Ia3Adapter(const model::LinearImpl& base, bool feedforward) : feedforward_(feedforward) {
  at::Device device = base.weight.is_meta() ? at::Device(at::kCPU) : base.weight.device();
  const auto opts = at::TensorOptions(at::kFloat).device(device);
  ia3_l = register_parameter(
      "ia3_l", feedforward ? at::ones({1, base.in_features}, opts) : at::ones({base.out_features, 1}, opts));
}

at::Tensor Ia3Adapter::forward(const at::Tensor& x, const at::Tensor& base_out, const model::LinearImpl& base) {
  // PEFT multiplies in the vector's dtype (float32) and casts back to the input's.
  const at::Tensor l = ia3_l.reshape({-1});
  if (feedforward_) return at::linear((x.to(at::kFloat) * l).to(x.scalar_type()), base.weight, bias_like(base, x));
  return (base_out.to(at::kFloat) * l).to(base_out.scalar_type());
}

std::vector<std::string> attach_ia3(model::CausalLM& model, const Ia3Options& options) {
  options.check();
  LoraOptions names;
  names.target_modules = options.target_modules;
  const std::vector<std::string> resolved = names.resolved_targets();
  const std::set<std::string> targets(resolved.begin(), resolved.end());
  const std::set<std::string> ff(options.feedforward_modules.begin(), options.feedforward_modules.end());
  for (auto& p : model.parameters()) p.requires_grad_(false);
  std::vector<std::string> attached;
  for (auto& [name, linear] : model.named_linears()) {
    const std::string part = last_part(name);
    if (!targets.count(part)) continue;
    auto adapter = std::make_shared<Ia3Adapter>(*linear, ff.count(part) > 0);
    adapter->ia3_l.requires_grad_(true);
    linear->set_adapter(adapter, "ia3");
    attached.push_back(name);
  }
  return attached;
}

size_t merge_ia3(model::CausalLM& model) {
  at::NoGradGuard no_grad;
  size_t merged = 0;
  for (auto& [name, linear] : model.named_linears()) {
    auto ia3 = std::dynamic_pointer_cast<Ia3Adapter>(linear->adapter());
    if (!ia3) continue;
    const at::Tensor l = ia3->ia3_l.to(linear->weight.device(), at::kFloat);  // broadcasts over W [out, in]
    linear->weight.copy_(linear->weight.to(at::kFloat) * l);
    if (!ia3->feedforward() && linear->bias.defined())
      linear->bias.copy_(linear->bias.to(at::kFloat) * l.reshape({-1}));
    ia3->ia3_l.fill_(1.0);
    ++merged;
  }
  return merged;
}

}  // namespace ftune::peft
