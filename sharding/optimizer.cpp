#include "sharding/optimizer.h"

#include "common/error.h"

namespace ftune::sharding {

bool decays_by_default(const std::string& name, int64_t dims) {
  if (dims < 2) return false;  // norms, biases
  return name.find("embed_tokens") == std::string::npos;
}

namespace {
void zero_all(std::vector<OptimParam>& params) {
  for (auto& p : params) p.param.mutable_grad() = at::Tensor();
}

void decay_ranges(const OptimParam& p, double factor) {
  for (auto [begin, count] : p.decay) p.param.detach().narrow(0, begin, count).mul_(factor);
}

at::Tensor flat_view(const at::Tensor& t) { return t.detach().view({-1}); }
}  // namespace

AdamW::AdamW(std::vector<OptimParam> params) : params_(std::move(params)) {
  for (auto& p : params_) {
    FTUNE_CHECK(p.param.scalar_type() == at::kFloat, "AdamW keeps fp32 parameters");
    exp_avg_.push_back(at::zeros_like(p.param.detach()));
    exp_avg_sq_.push_back(at::zeros_like(p.param.detach()));
    step_.push_back(at::zeros({}, p.param.options().dtype(at::kFloat).requires_grad(false)));
  }
}

void AdamW::step(const AdamWConfig& cfg) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> params, grads, m, v, steps;
  for (size_t i = 0; i < params_.size(); ++i) {
    const OptimParam& p = params_[i];
    if (!p.param.grad().defined()) continue;
    // Decay ranges are element ranges of the flattened tensor.
    OptimParam flat{flat_view(p.param), p.decay};
    if (cfg.weight_decay != 0) decay_ranges(flat, 1.0 - cfg.lr * cfg.weight_decay);
    params.push_back(p.param.detach());
    grads.push_back(p.param.grad());
    m.push_back(exp_avg_[i]);
    v.push_back(exp_avg_sq_[i]);
    steps.push_back(step_[i]);
  }
  ++steps_;
  if (params.empty()) return;
  // The fused kernel reads the step count after this increment, as torch.optim does.
  at::_foreach_add_(steps, 1);
  at::_fused_adamw_(params, grads, m, v, {}, steps, cfg.lr, cfg.beta1, cfg.beta2,
                    /*weight_decay=*/0.0, cfg.eps, /*amsgrad=*/false, /*maximize=*/false);
}

void AdamW::zero_grad() { zero_all(params_); }

std::vector<std::pair<std::string, at::Tensor>> AdamW::state(size_t i) const {
  return {{"exp_avg", exp_avg_.at(i)}, {"exp_avg_sq", exp_avg_sq_.at(i)}};
}

void AdamW::set_steps(int64_t steps) {
  steps_ = steps;
  for (auto& s : step_) s.fill_(double(steps));
}

SGD::SGD(std::vector<OptimParam> params) : params_(std::move(params)) {
  for (auto& p : params_) momentum_.push_back(at::zeros({p.param.numel()}, p.param.options().requires_grad(false)));
}

std::vector<std::pair<std::string, at::Tensor>> SGD::state(size_t i) const {
  return {{"momentum", momentum_.at(i)}};
}

void SGD::step(const SGDConfig& cfg) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    OptimParam& p = params_[i];
    if (!p.param.grad().defined()) continue;
    at::Tensor g = p.param.grad().detach().view({-1}).clone();
    at::Tensor w = flat_view(p.param);
    if (cfg.weight_decay != 0)
      for (auto [begin, count] : p.decay)
        g.narrow(0, begin, count).add_(w.narrow(0, begin, count), cfg.weight_decay);
    if (cfg.momentum != 0) {
      momentum_[i].mul_(cfg.momentum).add_(g);
      g = momentum_[i];
    }
    w.add_(g, -cfg.lr);
  }
}

void SGD::zero_grad() { zero_all(params_); }

double clip_gradients(const std::vector<OptimParam>& params, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  const double factor = max_norm / (norm + 1e-6);
  at::NoGradGuard no_grad;
  for (const auto& p : params)
    if (p.param.grad().defined()) p.param.mutable_grad().mul_(factor);
  return factor;
}

}  // namespace ftune::sharding
