// Optimizers over whatever tensors the engine hands out: flat fp32 master slices (full
// fine-tuning) or whole adapter tensors (frozen base). Weight decay is given per element range,
// because one flat slice mixes matrices (decayed) with norms, biases and embeddings (not, by
// default).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace ftune::sharding {

struct OptimParam {
  at::Tensor param;  // fp32, requires grad; updated in place
  std::vector<std::pair<int64_t, int64_t>> decay;  // [begin, count) element ranges that decay
  // For checkpoints: a stable name, and for a unit's slice the unit index (the slice is this
  // rank's part of the unit's flat buffer and is re-sliced when the world size changes); -1
  // for a whole tensor, the same on every rank.
  std::string name;
  int unit = -1;
};

// The default rule: matrices decay; norms, biases and embeddings do not.
bool decays_by_default(const std::string& name, int64_t dims);

struct AdamWConfig {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Decoupled weight decay (p -= lr * wd * p on the decayed ranges), then Adam through
// at::_fused_adamw_ (one fused kernel over all tensors, CPU and CUDA).
class AdamW {
 public:
  explicit AdamW(std::vector<OptimParam> params);
  void step(const AdamWConfig& cfg);  // tensors without a gradient are left alone
  void zero_grad();
  int64_t steps() const { return steps_; }
  // For checkpoints: parameter i's state tensors by name (restore by copying into them), and
  // the step count.
  std::vector<std::pair<std::string, at::Tensor>> state(size_t i) const;
  void set_steps(int64_t steps);

 private:
  std::vector<OptimParam> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_, step_;
  int64_t steps_ = 0;
};

struct SGDConfig {
  double lr = 1e-2, momentum = 0.9, weight_decay = 0.0;
};

// SGD with momentum (buf = momentum * buf + g, starting from zero, so the first step has
// buf = g; p -= lr * buf); weight
// decay adds wd * p to the gradient on the decayed ranges, as torch.optim.SGD does.
class SGD {
 public:
  explicit SGD(std::vector<OptimParam> params);
  void step(const SGDConfig& cfg);
  void zero_grad();
  std::vector<std::pair<std::string, at::Tensor>> state(size_t i) const;

 private:
  std::vector<OptimParam> params_;
  std::vector<at::Tensor> momentum_;
};

// Multiplies every gradient by max_norm / norm when norm exceeds max_norm; returns the factor.
double clip_gradients(const std::vector<OptimParam>& params, double norm, double max_norm);

}  // namespace ftune::sharding
