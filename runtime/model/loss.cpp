#include "runtime/model/loss.h"

#include <torch/autograd.h>

#include "common/error.h"

namespace ftune::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LinearCrossEntropy : torch::autograd::Function<LinearCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, const at::Tensor& labels,
                            int64_t ignore_label, int64_t chunk, bool want_grad, bool weight_grad) {
    const int64_t n = hidden.size(0);
    at::Tensor total = at::zeros({}, hidden.options().dtype(at::kFloat));
    at::Tensor grad_h, grad_w;
    if (want_grad) {
      grad_h = at::empty_like(hidden);
      // A frozen head (LoRA) needs no [V, H] float32 gradient: 2 GB at 128k x 4096.
      if (weight_grad) grad_w = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    }
    for (int64_t begin = 0; begin < n; begin += chunk) {
      const int64_t len = std::min(chunk, n - begin);
      at::Tensor h = hidden.narrow(0, begin, len);
      at::Tensor y = labels.narrow(0, begin, len);
      at::Tensor logits = at::linear(h, weight).to(at::kFloat);  // [len, V]
      at::Tensor valid = y.ne(ignore_label);
      at::Tensor safe = at::where(valid, y, at::zeros_like(y));
      at::Tensor lse = logits.logsumexp(-1);
      at::Tensor picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1);
      total += ((lse - picked) * valid).sum();
      if (!want_grad) continue;
      // d/dlogits of the summed loss: softmax - onehot(label), zero for ignored tokens; formed
      // in the logits' own buffer, so a chunk costs one [len, V] float32 tensor, not three.
      at::Tensor d = logits.sub_(lse.unsqueeze(1)).exp_();
      d.scatter_add_(1, safe.unsqueeze(1), at::full({len, 1}, -1.0, d.options()));
      d.mul_(valid.unsqueeze(1));
      at::Tensor dc = d.to(hidden.scalar_type());
      grad_h.narrow(0, begin, len).copy_(at::matmul(dc, weight));
      if (weight_grad) grad_w.add_(at::matmul(dc.t(), h).to(at::kFloat));
    }
    if (want_grad) {
      ctx->saved_data["grad_h"] = grad_h;
      ctx->saved_data["grad_w"] = weight_grad ? grad_w.to(weight.scalar_type()) : at::Tensor();
    }
    ctx->saved_data["want_grad"] = want_grad;
    return total;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    FTUNE_CHECK(ctx->saved_data["want_grad"].toBool(),
                "linear_cross_entropy_sum: backward through a call made without grad mode");
    // A 0-dim factor keeps the gradients' dtype and needs no device sync.
    at::Tensor g = grads[0];
    at::Tensor gh = ctx->saved_data["grad_h"].toTensor() * g;
    const c10::IValue& w = ctx->saved_data["grad_w"];
    at::Tensor gw = w.isTensor() ? w.toTensor() : at::Tensor();  // undefined: a frozen head
    if (gw.defined()) gw = gw * g;
    return {gh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_cross_entropy_sum(const at::Tensor& hidden, const at::Tensor& weight,
                                    const at::Tensor& labels, int64_t ignore_label,
                                    int64_t chunk_tokens) {
  FTUNE_CHECK(hidden.dim() == 2 && labels.dim() == 1 && labels.size(0) == hidden.size(0),
              "linear_cross_entropy_sum: hidden [N, H] and labels [N]");
  const bool want_grad =
      at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  return LinearCrossEntropy::apply(hidden, weight, labels, ignore_label,
                                   std::max<int64_t>(1, chunk_tokens), want_grad,
                                   want_grad && weight.requires_grad());
}

at::Tensor cross_entropy_stats(const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& labels, int64_t ignore_label, int64_t chunk) {
  at::NoGradGuard no_grad;
  at::Tensor out = at::zeros({2}, hidden.options().dtype(at::kFloat));
  chunk = std::max<int64_t>(1, chunk);
  for (int64_t begin = 0; begin < hidden.size(0); begin += chunk) {
    const int64_t len = std::min(chunk, hidden.size(0) - begin);
    at::Tensor logits = at::linear(hidden.narrow(0, begin, len), weight).to(at::kFloat);
    at::Tensor y = labels.narrow(0, begin, len);
    at::Tensor valid = y.ne(ignore_label);
    at::Tensor safe = at::where(valid, y, at::zeros_like(y));
    at::Tensor nll = logits.logsumexp(-1) - logits.gather(1, safe.unsqueeze(1)).squeeze(1);
    out[0] += (nll * valid).sum();
    out[1] += (logits.argmax(-1).eq(safe) & valid).sum().to(at::kFloat);
  }
  return out;
}

}  // namespace ftune::model
