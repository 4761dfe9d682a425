// Names and sizes of the communicator's dtypes and ops, and the 16-bit float conversions.
#include "runtime/comm/communicator.h"
#include "runtime/comm/half.h"

#include <cmath>
#include <cstring>

namespace ftune::comm {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

bool is_integer(DType dtype) {
  return dtype == DType::i32 || dtype == DType::i64 || dtype == DType::u8;
}

namespace {
uint32_t bits_of(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
float float_of(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
}  // namespace

float bf16_to_f32(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t x = bits_of(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7FFFu + ((x >> 16) & 1u);  // round to nearest even; overflow carries into inf
  return static_cast<uint16_t>(x >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return float_of(bits_of(v) | sign);
  }
  return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t x = bits_of(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;   // NaN
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                        // below 2^-14: subnormal in f16
    // Scaling by 2^24 is exact; nearbyint rounds to even in the default mode. 1024 carries
    // into the smallest normal, which is the right encoding.
    auto m = static_cast<uint32_t>(std::nearbyint(float_of(a) * 16777216.0f));
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t h = (((a >> 23) - 112u) << 10) | ((a & 0x7FFFFFu) >> 13);
  uint32_t rest = a & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

void widen_to_f32(const void* src, float* dst, size_t n, DType dtype) {
  auto s = static_cast<const uint16_t*>(src);
  if (dtype == DType::bf16) {
    for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
  }
}

void narrow_from_f32(const float* src, void* dst, size_t n, DType dtype) {
  auto d = static_cast<uint16_t*>(dst);
  if (dtype == DType::bf16) {
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
  }
}

}  // namespace ftune::comm

#include "common/error.h"
#include "runtime/comm/backend_util.h"

namespace ftune::comm {

void check_reduce_args(DType dtype, ReduceOp op, const char* collective) {
  if (op == ReduceOp::avg && is_integer(dtype)) {
    throw Error(std::string("[comm] ") + collective + ": avg of " + dtype_name(dtype) +
                " is refused (an integer mean truncates): reduce with sum and divide");
  }
}

void check_root(int root, int size, const char* collective) {
  if (root < 0 || root >= size) {
    throw Error(std::string("[comm] ") + collective + ": root " + std::to_string(root) +
                " is outside this communicator's ranks 0.." + std::to_string(size - 1));
  }
}

}  // namespace ftune::comm
