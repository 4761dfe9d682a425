// 4-bit NormalFloat (Dettmers et al. 2023, "QLoRA"), as bitsandbytes stores it: the weight
// flattened row-major into blocks of `block` values, each block scaled by its absolute maximum
// and every value replaced by the index of the nearest of 16 levels spaced for normally
// distributed weights; two indices per byte, the first in the high nibble. With double
// quantisation the absmax values (float32, one per block) are themselves stored in 8 bits:
// their mean is subtracted and the rest quantised in blocks of 256 with bitsandbytes' signed
// dynamic 8-bit map, so a weight costs 0.5 + 1/block (+ 4 / (block * 256)) bytes.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "runtime/model/llama.h"
#include "runtime/peft/nf4_size.h"

namespace ftune::peft {

struct Nf4Options {
  int64_t block = 64;         // [weights] per absmax
  bool double_quant = true;   // absmax in 8 bits, blocks of 256
  int64_t nested_block = 256; // [absmax values] per nested scale
};

// One quantised tensor; all members live on the tensor's device.
struct Nf4Tensor {
  at::Tensor packed;         // uint8 [numel / 2]
  at::Tensor absmax;         // float32 [blocks], or uint8 [blocks] with double quantisation
  at::Tensor nested_absmax;  // float32 [ceil(blocks / 256)]; double quantisation only
  float offset = 0;          // the mean subtracted from absmax before its quantisation
  std::vector<int64_t> shape;
  int64_t block = 64, nested_block = 256;
  // The 16 levels and the nested 256 levels, when a checkpoint brings its own (bitsandbytes'
  // quant_map, nested_quant_map); undefined: nf4_code() and dynamic_code().
  at::Tensor code, nested_code;
  at::ScalarType dtype = at::kFloat;  // what dequantise() returns by default (the original's)
  int64_t numel() const;
  int64_t bytes() const;  // [bytes] resident: packed + absmax (+ nested scales and offset)
};

// The 16 NF4 levels (float32, CPU), lowest first: index i decodes to nf4_code()[i] * absmax.
const at::Tensor& nf4_code();
// bitsandbytes' create_dynamic_map(signed=True): the 256 levels of its 8-bit blockwise code.
const at::Tensor& dynamic_code();

// Quantises w (any float dtype; computed in float32). Throws ftune::Error when w's size is not
// a multiple of the block (naming the sizes).
Nf4Tensor quantize_nf4(const at::Tensor& w, const Nf4Options& options);
// The absmax of every block as float32 [blocks] (undoing double quantisation).
at::Tensor nf4_absmax(const Nf4Tensor& q);
// The weight back, in `dtype` (default: the original's), shaped as it was.
at::Tensor dequantize_nf4(const Nf4Tensor& q, std::optional<at::ScalarType> dtype = std::nullopt);

// Bytes an NF4 copy of `numel` weights takes: 0.5 per weight plus the absmax storage.
inline double nf4_bytes(int64_t numel, const Nf4Options& o) {
  return nf4_bytes(numel, o.block, o.double_quant, o.nested_block);
}

// y = x W^T with W held in NF4: dequantised on the fly in forward and again in backward (only
// the packed form is kept for backward). Gradients flow to x only; W is frozen.
at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensor& w);

}  // namespace ftune::peft
