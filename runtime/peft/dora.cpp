#include "runtime/peft/dora.h"

namespace ftune::peft {

DoraAdapter::DoraAdapter(const model::LinearImpl& base, const LoraOptions& o, at::Generator& gen)
    : LoraAdapter(base, o, gen) {
  // B starts at zero, so ||W + s B A|| is ||W||: the magnitude reproduces the base exactly.
  at::Tensor m = base.weight.is_meta() ? at::ones({base.out_features}, at::kFloat)
                                       : weight_norm(base.weight).to(lora_A.device());
  lora_magnitude_vector = register_parameter("lora_magnitude_vector", m);
}

at::Tensor DoraAdapter::weight_norm(const at::Tensor& weight) const {
  at::NoGradGuard no_grad;
  const at::Tensor w = weight.to(at::kFloat);
  const at::Tensor delta = at::matmul(lora_B.detach().to(w.device()), lora_A.detach().to(w.device()));
  return at::linalg_vector_norm(w + delta * scaling(), 2, {1});
}

at::Tensor DoraAdapter::forward(const at::Tensor& x, const at::Tensor& base_out, const model::LinearImpl& base) {
  const auto dtype = x.scalar_type();
  const bool drop = dropout() > 0 && is_training();
  const at::Tensor h = drop ? at::dropout(x, dropout(), true) : x;
  const at::Tensor scale = (lora_magnitude_vector / weight_norm(base.weight)).to(dtype);  // [out]
  const at::Tensor lora_out = at::linear(at::linear(h, lora_A.to(dtype)), lora_B.to(dtype));
  // The base's share without its bias; under dropout PEFT recomputes it from the dropped input.
  at::Tensor base_part = drop ? at::linear(h, base.weight)
                         : base.bias.defined() ? base_out - base.bias.to(dtype) : base_out;
  return base_out + (scale - 1) * base_part + scale * lora_out * scaling();
}

void merge_dora(model::LinearImpl& linear, DoraAdapter& dora) {
  at::NoGradGuard no_grad;
  const at::Tensor w = linear.weight.to(at::kFloat);
  const at::Tensor delta = at::matmul(dora.lora_B.to(w.device(), at::kFloat), dora.lora_A.to(w.device(), at::kFloat));
  const at::Tensor adapted = w + delta * dora.scaling();
  const at::Tensor factor = (dora.lora_magnitude_vector.to(w.device()) / dora.weight_norm(linear.weight)).unsqueeze(1);
  linear.weight.copy_(adapted * factor);
  dora.lora_B.zero_();
  dora.lora_magnitude_vector.copy_(dora.weight_norm(linear.weight));
}

}  // namespace ftune::peft
