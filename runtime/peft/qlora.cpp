#include "runtime/peft/qlora.h"

#include <set>
#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace ftune::peft {

at::Tensor Nf4Base::forward(const at::Tensor& x, const at::Tensor&, const model::LinearImpl& base) {
  at::Tensor y = nf4_linear(x, weight_);
  return base.bias.defined() ? y + base.bias.to(y.scalar_type()) : y;
}

QLoraAdapter::QLoraAdapter(const model::LinearImpl& base, const LoraOptions& o, at::Generator& gen, Nf4Tensor w)
    : LoraAdapter(base, o, gen), base_(std::move(w)) {}

at::Tensor QLoraAdapter::forward(const at::Tensor& x, const at::Tensor&, const model::LinearImpl& base) {
  return LoraAdapter::forward(x, base_.forward(x, at::Tensor(), base), base);
}

std::vector<std::string> attach_qlora(model::CausalLM& model, const LoraOptions& lora, const Nf4Options& nf4,
                                      uint64_t seed) {
  if (lora.r <= 0) throw Error("lora.r must be positive (got " + std::to_string(lora.r) + ")");
  if (lora.use_dora) throw Error("DoRA on an NF4 base (QDoRA) is not supported: use method.name = dora or qlora");
  const std::vector<std::string> resolved = lora.resolved_targets();
  const std::set<std::string> targets(resolved.begin(), resolved.end());
  for (auto& p : model.parameters()) p.requires_grad_(false);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::string> attached;
  at::NoGradGuard no_grad;
  for (auto& [name, linear] : model.named_linears()) {
    // A base loaded in 4 bits (a bnb-4bit checkpoint) keeps its own NF4 form.
    auto loaded = std::dynamic_pointer_cast<Nf4Base>(linear->adapter());
    Nf4Tensor q = loaded ? loaded->weight() : quantize_nf4(linear->weight, nf4);
    if (targets.count(name.substr(name.rfind('.') + 1))) {
      auto adapter = std::make_shared<QLoraAdapter>(*linear, lora.for_module(name), gen, std::move(q));
      for (auto& p : adapter->parameters()) p.requires_grad_(true);
      linear->set_adapter(adapter, "lora");
      attached.push_back(name);
    } else {
      linear->set_adapter(std::make_shared<Nf4Base>(std::move(q)), "nf4");
    }
    // The 16- or 32-bit weight goes: only the NF4 copy stays resident.
    linear->weight.set_data(at::empty({0}, linear->weight.options()));
  }
  return attached;
}

bool has_nf4_base(model::CausalLM& model) {
  for (auto& [name, linear] : model.named_linears()) {
    const auto& a = linear->adapter();
    if (std::dynamic_pointer_cast<Nf4Base>(a) || std::dynamic_pointer_cast<QLoraAdapter>(a)) return true;
  }
  return false;
}

int64_t resident_bytes(model::CausalLM& model) {
  std::unordered_set<const void*> seen;
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) {
    const void* key = p.storage().unsafeGetStorageImpl();
    if (seen.insert(key).second) bytes += int64_t(p.storage().nbytes());
  }
  for (auto& [name, linear] : model.named_linears()) {
    const auto& a = linear->adapter();
    if (auto q = std::dynamic_pointer_cast<QLoraAdapter>(a)) bytes += q->weight().bytes();
    else if (auto b = std::dynamic_pointer_cast<Nf4Base>(a)) bytes += b->weight().bytes();
  }
  return bytes;
}

}  // namespace ftune::peft
