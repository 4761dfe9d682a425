// Conversions between f32 and the two 16-bit float formats, for backends that reduce bf16 and
// f16 through an f32 staging buffer (mpi) and for tests that need a reference. Round to
// nearest even, as the hardware does, so a staged reduction rounds once, at the end.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ftune::comm {

float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// `n` 16-bit values of `dtype` (bf16 or f16) to f32 and back.
enum class DType;
void widen_to_f32(const void* src, float* dst, size_t n, DType dtype);
void narrow_from_f32(const float* src, void* dst, size_t n, DType dtype);

}  // namespace ftune::comm
