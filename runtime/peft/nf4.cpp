#include "runtime/peft/nf4.h"

#include <torch/autograd.h>

#include "common/error.h"

namespace ftune::peft {

const at::Tensor& nf4_code() {
  // The levels of the QLoRA paper's appendix E, as bitsandbytes' get_4bit_type("nf4") lists them.
  static const at::Tensor code = at::tensor(
      std::vector<float>{-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                         -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                         0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                         0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                         0.7229568362236023f, 1.0f},
      at::kFloat);
  return code;
}

const at::Tensor& dynamic_code() {
  // Signed, 7 exponent bits, 8 bits in all: for exponent i, 2^i means of a linspace(0.1, 1)
  // scaled by 10^(i - 6), both signs; then 0 and 1, sorted. Built with the same float32 ops
  // (linspace, scalar multiply) bitsandbytes uses, so every level matches its map bit for bit.
  static const at::Tensor code = [] {
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < 7; ++i) {
      at::Tensor bounds = at::linspace(0.1, 1.0, (int64_t(1) << i) + 1, at::kFloat);
      at::Tensor means = (bounds.narrow(0, 0, bounds.size(0) - 1) + bounds.narrow(0, 1, bounds.size(0) - 1)) / 2.0;
      const double scale = std::pow(10.0, double(i - 6));
      parts.push_back(means * scale);
      parts.push_back(means * -scale);
    }
    parts.push_back(at::tensor(std::vector<float>{0.0f, 1.0f}, at::kFloat));
    return std::get<0>(at::cat(parts).sort());
  }();
  return code;
}

namespace {

// Index of the nearest level for each value in [-1, 1]; ties go to the lower index, as
// torch.argmin does in bitsandbytes' reference path.
at::Tensor nearest(const at::Tensor& scaled, const at::Tensor& code) {
  at::Tensor c = code.to(scaled.device());
  // Chunked so that the [n, levels] distance matrix stays small for large weights.
  const int64_t chunk = int64_t(1) << 20;
  std::vector<at::Tensor> out;
  for (int64_t s = 0; s < scaled.numel(); s += chunk) {
    at::Tensor part = scaled.narrow(0, s, std::min(chunk, scaled.numel() - s));
    out.push_back((part.unsqueeze(1) - c).abs().argmin(1).to(at::kByte));
  }
  return at::cat(out);
}

// Blockwise absmax quantisation of `values` [n] with `code`: (codes uint8 [n], absmax [blocks]).
std::pair<at::Tensor, at::Tensor> quantize_blockwise(const at::Tensor& values, const at::Tensor& code, int64_t block) {
  const int64_t n = values.numel(), blocks = (n + block - 1) / block;
  at::Tensor padded = at::zeros({blocks * block}, values.options());
  padded.narrow(0, 0, n).copy_(values);
  at::Tensor b = padded.view({blocks, block});
  at::Tensor absmax = std::get<0>(b.abs().max(1));
  at::Tensor scaled = at::clamp(b / absmax.unsqueeze(1), -1, 1).reshape({-1}).narrow(0, 0, n);
  return {nearest(scaled, code), absmax};
}

}  // namespace

int64_t Nf4Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Nf4Tensor::bytes() const {
  int64_t b = packed.numel() + absmax.numel() * absmax.element_size();
  if (nested_absmax.defined()) b += nested_absmax.numel() * 4 + 4;
  return b;
}

Nf4Tensor quantize_nf4(const at::Tensor& w, const Nf4Options& o) {
  at::NoGradGuard no_grad;
  if (w.numel() % o.block != 0 || w.numel() % 2 != 0)
    throw Error("NF4: a tensor of shape " + c10::str(w.sizes()) + " (" + std::to_string(w.numel()) +
                " values) does not divide into blocks of " + std::to_string(o.block) + "; set qlora.block to a "
                "divisor of it");
  Nf4Tensor q;
  q.shape = w.sizes().vec();
  q.block = o.block;
  q.nested_block = o.nested_block;
  q.dtype = w.scalar_type();
  // The level tables on the weight's device, so that dequantising never copies from the host.
  q.code = nf4_code().to(w.device());
  auto [idx, absmax] = quantize_blockwise(w.detach().reshape({-1}).to(at::kFloat), nf4_code(), o.block);
  at::Tensor pairs = idx.view({-1, 2});
  q.packed = (pairs.select(1, 0).__lshift__(4)).bitwise_or(pairs.select(1, 1)).contiguous();
  if (!o.double_quant) {
    q.absmax = absmax;
    return q;
  }
  at::Tensor mean = absmax.mean();
  q.offset = mean.item<float>();
  auto [codes, nested] = quantize_blockwise(absmax - mean, dynamic_code(), o.nested_block);
  q.absmax = codes;
  q.nested_absmax = nested;
  q.nested_code = dynamic_code().to(w.device());
  return q;
}

at::Tensor nf4_absmax(const Nf4Tensor& q) {
  if (!q.nested_absmax.defined()) return q.absmax;
  const int64_t n = q.absmax.numel(), blocks = q.nested_absmax.numel();
  at::Tensor v = at::zeros({blocks * q.nested_block}, q.nested_absmax.options());
  const at::Tensor& code = q.nested_code.defined() ? q.nested_code : dynamic_code();
  v.narrow(0, 0, n).copy_(code.to(q.absmax.device()).index({q.absmax.to(at::kLong)}));
  v = (v.view({blocks, q.nested_block}) * q.nested_absmax.unsqueeze(1)).reshape({-1}).narrow(0, 0, n);
  return v + q.offset;
}

at::Tensor dequantize_nf4(const Nf4Tensor& q, std::optional<at::ScalarType> dtype) {
  at::NoGradGuard no_grad;
  at::Tensor hi = q.packed.__rshift__(4), lo = q.packed.bitwise_and(15);
  at::Tensor idx = at::stack({hi, lo}, 1).reshape({-1}).to(at::kLong);
  const at::Tensor& code = q.code.defined() ? q.code : nf4_code();
  at::Tensor values = code.to(q.packed.device()).index({idx}).view({-1, q.block});
  at::Tensor w = (values * nf4_absmax(q).unsqueeze(1)).view(q.shape);
  return w.to(dtype.value_or(q.dtype));
}

namespace {

// Keeps the packed weight (not the dequantised one) for backward: the memory QLoRA saves.
struct Nf4LinearFunction : torch::autograd::Function<Nf4LinearFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const Nf4Tensor* w) {
    ctx->saved_data["w"] = int64_t(reinterpret_cast<intptr_t>(w));
    return at::linear(x, dequantize_nf4(*w, x.scalar_type()));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto* w = reinterpret_cast<const Nf4Tensor*>(intptr_t(ctx->saved_data["w"].toInt()));
    return {at::matmul(grad[0], dequantize_nf4(*w, grad[0].scalar_type())), at::Tensor()};
  }
};

}  // namespace

at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensor& w) {
  // The Nf4Tensor is owned by its module, which outlives every graph that uses it.
  return Nf4LinearFunction::apply(x, &w);
}

}  // namespace ftune::peft
