// Autoregressive generation with a KV cache: greedy or sampled (temperature, top-k, top-p).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/llama.h"

namespace ftune::model {

struct SamplingOptions {
  bool greedy = true;
  double temperature = 1.0;  // > 0
  double top_p = 1.0;        // (0, 1]; 1 = off
  int64_t top_k = 0;         // 0 = off
  uint64_t seed = 0;
};

// Returns only the new token ids (at most max_new_tokens); stops after the first id in
// eos_ids, which is included, as transformers' generate() does.
std::vector<int64_t> generate(CausalLM& model, const std::vector<int64_t>& prompt,
                              int64_t max_new_tokens, const SamplingOptions& sampling,
                              const std::vector<int64_t>& eos_ids);

// One sampling step on logits [vocab] (float32): the next token id.
int64_t sample_next(const at::Tensor& logits, const SamplingOptions& sampling,
                    at::Generator& generator);

}  // namespace ftune::model
