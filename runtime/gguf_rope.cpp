#include "runtime/gguf_rope.h"

#include <algorithm>
#include <cmath>

namespace ftune::model {

std::vector<float> llama3_rope_factors(const RopeConfig& rope, int64_t head_dim) {
  const double low_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor;
  const double high_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    // As the converter: frequencies in float32, the rest in double.
    const float freq = 1.0f / std::pow(static_cast<float>(rope.theta), static_cast<float>(i) / static_cast<float>(head_dim));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(rope.factor));
    } else {
      const double smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      out.push_back(static_cast<float>(1 / ((1 - smooth) / rope.factor + smooth)));
    }
  }
  return out;
}

std::optional<RopeConfig> infer_llama3_rope(const std::vector<float>& factors, double theta, int64_t head_dim) {
  if (factors.empty() || static_cast<int64_t>(factors.size()) * 2 != head_dim) return std::nullopt;
  RopeConfig r;
  r.type = RopeType::kLlama3;
  r.theta = theta;
  r.factor = *std::max_element(factors.begin(), factors.end());
  for (int64_t ctx : {8192, 4096, 2048, 16384, 32768, 65536, 131072})
    for (double low : {1.0, 2.0, 0.5})
      for (double high : {4.0, 8.0, 2.0}) {
        r.original_max_position_embeddings = ctx;
        r.low_freq_factor = low;
        r.high_freq_factor = high;
        const std::vector<float> f = llama3_rope_factors(r, head_dim);
        bool same = true;
        for (size_t i = 0; i < f.size() && same; ++i)
          same = std::fabs(f[i] - factors[i]) <= 1e-5 * std::fabs(factors[i]);
        if (same) return r;
      }
  return std::nullopt;
}

}  // namespace ftune::model
