// ggml tensor types: names, block layouts, dequantisation to float32 and the few conversions
// the GGUF exporter needs. Torch-free.
//
// Every dequantiser does the float operations in the order the `gguf` Python package does them
// (gguf/quants.py), in float32 and without fused multiply-adds (this file is compiled with
// -ffp-contract=off), so the results are bit-identical to gguf.quants.dequantize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ftune::gguf {

// Type ids as stored in the file (ggml's enum ggml_type).
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kIQ2_XXS = 16, kIQ2_XS = 17, kIQ3_XXS = 18, kIQ1_S = 19, kIQ4_NL = 20, kIQ3_S = 21,
  kIQ2_S = 22, kIQ4_XS = 23, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28,
  kIQ1_M = 29, kBF16 = 30, kTQ1_0 = 34, kTQ2_0 = 35, kMXFP4 = 39,
};

struct TypeTraits {
  GgmlType type;
  const char* name;      // "Q4_K"
  uint32_t block_elems;  // [elements per block]
  uint32_t block_bytes;  // [bytes per block]
  bool dequantizable;    // ftune can turn it into float32
};

// Null for a type id ggml does not define.
const TypeTraits* type_traits(uint32_t id);
const TypeTraits& type_traits(GgmlType t);  // the type must be known
// "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16"
std::string dequantizable_type_names();

// Dequantises `n` elements (a multiple of the block size) from `src` into `dst`.
// Precondition: type_traits(t).dequantizable.
void dequantize(GgmlType t, const uint8_t* src, uint64_t n, float* dst);

// IEEE half <-> float, rounding to nearest even (as numpy's astype(float16)).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
// float -> bfloat16 rounding to nearest even, NaN kept quiet (as PyTorch and gguf's BF16).
uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t b);

// Quantises `n` floats (a multiple of 32) into Q8_0 blocks (34 bytes per 32 values), as
// gguf.quants.quantize does: d = max|x| / 127, q = round(x / d) with halves away from zero.
void quantize_q8_0(const float* src, uint64_t n, uint8_t* dst);

}  // namespace ftune::gguf
