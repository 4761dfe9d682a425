// DoRA (Liu et al. 2024, "Weight-Decomposed Low-Rank Adaptation") as PEFT defines it: the
// adapted weight W + s B A is split into a direction and a learned magnitude per output row,
//   y = m / ||W + s B A||_row * (W x + s B A x) + b,
// with the row norm detached from the graph (the paper's section 4.3, PEFT's default), and m
// initialised to ||W||_row so that training starts from the base model.
#pragma once

#include "runtime/peft/lora.h"

namespace ftune::peft {

class DoraAdapter : public LoraAdapter {
 public:
  DoraAdapter(const model::LinearImpl& base, const LoraOptions& options, at::Generator& gen);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base_out,
                     const model::LinearImpl& base) override;
  // ||W + s B A|| per output row [out], float32, without gradient.
  at::Tensor weight_norm(const at::Tensor& weight) const;
  at::Tensor lora_magnitude_vector;  // m [out], float32 (PEFT's key name)
};

// Folds a DoRA adapter into its base: W <- m / ||W + s B A|| * (W + s B A); then B = 0 and
// m = ||W||, so the module computes the same function.
void merge_dora(model::LinearImpl& linear, DoraAdapter& dora);

}  // namespace ftune::peft
