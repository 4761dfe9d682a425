// QLoRA (Dettmers et al. 2023): every projection's frozen base held in NF4 (runtime/peft/nf4.h)
// and dequantised on the fly in forward and backward; LoRA adapters train on top in float32.
#pragma once

#include "runtime/peft/lora.h"
#include "runtime/peft/nf4.h"

namespace ftune::peft {

// The base matmul from an NF4 copy of the weight, plus the bias; an adapter slot of its own for
// projections without LoRA.
class Nf4Base : public model::LinearAdapter {
 public:
  explicit Nf4Base(Nf4Tensor weight) : weight_(std::move(weight)) {}
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base_out, const model::LinearImpl& base) override;
  bool replaces_base() const override { return true; }
  const Nf4Tensor& weight() const { return weight_; }

 private:
  Nf4Tensor weight_;
};

// LoRA on an NF4 base: parameters named as LoraAdapter's, so the export is plain PEFT LoRA.
class QLoraAdapter : public LoraAdapter {
 public:
  QLoraAdapter(const model::LinearImpl& base, const LoraOptions& options, at::Generator& gen, Nf4Tensor weight);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base_out, const model::LinearImpl& base) override;
  bool replaces_base() const override { return true; }
  const Nf4Tensor& weight() const { return base_.weight(); }

 private:
  Nf4Base base_;
};

// Quantises every projection of the model to NF4 (freeing its weight: the parameter keeps its
// name but holds no values; a projection already in NF4 keeps its form) and attaches LoRA to
// the targeted ones. Returns the adapted names.
std::vector<std::string> attach_qlora(model::CausalLM& model, const LoraOptions& lora, const Nf4Options& nf4,
                                      uint64_t seed);

// Whether any projection holds its base in NF4.
bool has_nf4_base(model::CausalLM& model);

// [bytes] held by the model's tensors (parameters, NF4 copies), each storage once.
int64_t resident_bytes(model::CausalLM& model);

}  // namespace ftune::peft
