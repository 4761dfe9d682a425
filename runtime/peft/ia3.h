// IA³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
// In-Context Learning") as PEFT defines it: a learned vector rescales a projection's output
// (keys, values: y = (W x + b) * l) or, for a feed-forward module, its input
// (down_proj: y = W (x * l) + b). Vectors start at one, so training starts from the base model.
#pragma once

#include <string>
#include <vector>

#include "runtime/model/llama.h"

namespace ftune::peft {

struct Ia3Options {
  // PEFT's defaults for Llama: keys, values and the input of the MLP's down projection.
  std::vector<std::string> target_modules = {"k_proj", "v_proj", "down_proj"};
  std::vector<std::string> feedforward_modules = {"down_proj"};
  // Throws ftune::Error naming the key (ia3.target_modules / ia3.feedforward_modules) when a
  // name is not a projection or a feed-forward module is not a target.
  void check() const;
};

class Ia3Adapter : public model::LinearAdapter {
 public:
  Ia3Adapter(const model::LinearImpl& base, bool feedforward);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base_out,
                     const model::LinearImpl& base) override;
  // A feed-forward module scales the matmul's input, so it computes the matmul itself.
  bool replaces_base() const override { return feedforward_; }
  bool feedforward() const { return feedforward_; }
  at::Tensor ia3_l;  // float32; [out, 1], or [1, in] for a feed-forward module (PEFT's shapes)

 private:
  bool feedforward_;
};

// Freezes every model parameter and attaches an IA³ vector (named "ia3": parameters are
// `<linear>.ia3.ia3_l`) to each targeted projection. Returns the adapted module names.
std::vector<std::string> attach_ia3(model::CausalLM& model, const Ia3Options& options);

// Folds every IA³ vector into its base weight (and, for output scaling, the bias) and resets
// the vector to one, so the model computes the same function. Returns the modules merged.
size_t merge_ia3(model::CausalLM& model);

}  // namespace ftune::peft
