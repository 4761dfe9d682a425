// The bytes an NF4 copy of a weight takes (runtime/peft/nf4.h), torch-free for `model info`.
#pragma once

#include <cmath>
#include <cstdint>

namespace ftune::peft {

// 0.5 byte per weight, plus one absmax per block: float32, or with double quantisation one
// byte each plus a float32 scale per 256 of them and the float32 offset.
inline double nf4_bytes(int64_t numel, int64_t block, bool double_quant, int64_t nested_block = 256) {
  const double blocks = std::ceil(double(numel) / double(block));
  if (!double_quant) return double(numel) / 2 + blocks * 4;
  return double(numel) / 2 + blocks + std::ceil(blocks / double(nested_block)) * 4 + 4;
}

}  // namespace ftune::peft
