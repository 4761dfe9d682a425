#include "runtime/generate.h"

#include <algorithm>
#include <iostream>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace ftune::model {

int64_t sample_next(const at::Tensor& logits, const SamplingOptions& s, at::Generator& gen) {
  if (s.greedy) return logits.argmax().item<int64_t>();
  // Same order as transformers' logits processors: temperature, then top-k, then top-p.
  at::Tensor scores = logits.to(at::kFloat) / s.temperature;
  const int64_t vocab = scores.size(0);
  if (s.top_k > 0 && s.top_k < vocab) {
    at::Tensor kth = std::get<0>(scores.topk(s.top_k)).min();
    scores = scores.masked_fill(scores < kth, -INFINITY);
  }
  if (s.top_p < 1.0) {
    auto [sorted, order] = scores.sort(/*dim=*/-1, /*descending=*/true);
    at::Tensor cum = sorted.softmax(-1).cumsum(-1);
    // Drop a token when the ones ranked above it already reach top_p; the best always stays.
    at::Tensor drop = (cum - sorted.softmax(-1)) >= s.top_p;
    scores = scores.scatter(0, order, sorted.masked_fill(drop, -INFINITY));
  }
  at::Tensor probs = scores.softmax(-1);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

std::vector<int64_t> generate(CausalLM& model, const std::vector<int64_t>& prompt,
                              int64_t max_new_tokens, const SamplingOptions& s,
                              const std::vector<int64_t>& eos_ids) {
  if (prompt.empty()) throw Error("generate: the prompt has no tokens");
  if (!s.greedy && s.temperature <= 0) throw Error("--temperature must be > 0 (or use --greedy)");
  if (s.top_p <= 0 || s.top_p > 1) throw Error("--top-p must be in (0, 1]");
  const auto& cfg = model.config();
  for (int64_t id : prompt)
    if (id < 0 || id >= cfg.vocab_size)
      throw Error("prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(cfg.vocab_size) + ")");
  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  if (total > cfg.max_position_embeddings)
    std::cerr << "[generate] warning: " << total << " tokens exceed max_position_embeddings ("
              << cfg.max_position_embeddings << ")\n";

  at::NoGradGuard no_grad;
  const at::Tensor& w = model.backbone()->embed_tokens->weight;
  KVCache cache(cfg, 1, total + model.prefix_tokens(), w.options());  // prefix tuning's tokens first
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s.seed);
  at::Tensor ids = at::tensor(prompt, at::kLong).to(w.device()).unsqueeze(0);
  std::vector<int64_t> out;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    at::Tensor logits = model.forward(ids, &cache);  // [1, T, vocab]
    // Sampling runs on the CPU in float32 so that a seed gives the same ids on every device.
    at::Tensor last = logits[0][-1].to(at::kCPU, at::kFloat);
    int64_t next = sample_next(last, s, gen);
    out.push_back(next);
    if (std::find(eos_ids.begin(), eos_ids.end(), next) != eos_ids.end()) break;
    ids = at::full({1, 1}, next, at::TensorOptions(at::kLong).device(w.device()));
  }
  return out;
}

}  // namespace ftune::model
