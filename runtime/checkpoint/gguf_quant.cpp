#include "runtime/checkpoint/gguf_quant.h"

#include <cmath>
#include <cstring>

#include "common/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF blocks are read as little-endian");

namespace ftune::gguf {
namespace {

constexpr uint32_t kQK = 256;  // elements per K-quant super-block

// The one table of ggml types: block layouts from ggml's type_traits.
constexpr TypeTraits kTypes[] = {
    {GgmlType::kF32, "F32", 1, 4, true},        {GgmlType::kF16, "F16", 1, 2, true},
    {GgmlType::kQ4_0, "Q4_0", 32, 18, true},    {GgmlType::kQ4_1, "Q4_1", 32, 20, true},
    {GgmlType::kQ5_0, "Q5_0", 32, 22, true},   {GgmlType::kQ5_1, "Q5_1", 32, 24, true},
    {GgmlType::kQ8_0, "Q8_0", 32, 34, true},    {GgmlType::kQ8_1, "Q8_1", 32, 40, false},
    {GgmlType::kQ2_K, "Q2_K", 256, 84, true},  {GgmlType::kQ3_K, "Q3_K", 256, 110, true},
    {GgmlType::kQ4_K, "Q4_K", 256, 144, true},  {GgmlType::kQ5_K, "Q5_K", 256, 176, true},
    {GgmlType::kQ6_K, "Q6_K", 256, 210, true},  {GgmlType::kQ8_K, "Q8_K", 256, 292, false},
    {GgmlType::kIQ2_XXS, "IQ2_XXS", 256, 66, false}, {GgmlType::kIQ2_XS, "IQ2_XS", 256, 74, false},
    {GgmlType::kIQ3_XXS, "IQ3_XXS", 256, 98, false}, {GgmlType::kIQ1_S, "IQ1_S", 256, 50, false},
    {GgmlType::kIQ4_NL, "IQ4_NL", 32, 18, false},    {GgmlType::kIQ3_S, "IQ3_S", 256, 110, false},
    {GgmlType::kIQ2_S, "IQ2_S", 256, 82, false},     {GgmlType::kIQ4_XS, "IQ4_XS", 256, 136, false},
    {GgmlType::kI8, "I8", 1, 1, false},         {GgmlType::kI16, "I16", 1, 2, false},
    {GgmlType::kI32, "I32", 1, 4, false},       {GgmlType::kI64, "I64", 1, 8, false},
    {GgmlType::kF64, "F64", 1, 8, false},       {GgmlType::kIQ1_M, "IQ1_M", 256, 56, false},
    {GgmlType::kBF16, "BF16", 1, 2, true},      {GgmlType::kTQ1_0, "TQ1_0", 256, 54, false},
    {GgmlType::kTQ2_0, "TQ2_0", 256, 66, false}, {GgmlType::kMXFP4, "MXFP4", 32, 17, false},
};

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float load_half(const uint8_t* p) { return half_to_float(load_u16(p)); }

void dequant_q4_0(const uint8_t* b, float* out) {
  const float d = load_half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    out[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* out) {
  const float d = load_half(b), m = load_half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    out[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// Q5_0/Q5_1: the fifth bit of value j is bit j of the little-endian u32 qh.
void dequant_q5(const uint8_t* b, bool with_min, float* out) {
  const float d = load_half(b), m = with_min ? load_half(b + 2) : 0.0f;
  uint32_t qh;
  std::memcpy(&qh, b + (with_min ? 4 : 2), 4);
  const uint8_t* qs = b + (with_min ? 8 : 6);
  for (int j = 0; j < 32; ++j) {
    const int low = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
    const int q = low | static_cast<int>(((qh >> j) & 1) << 4);
    if (with_min) out[j] = d * static_cast<float>(q) + m;
    else out[j] = d * static_cast<float>(static_cast<int8_t>(q - 16));
  }
}

// Q2_K: 16 sub-blocks of 16 with 4-bit scale (low) and min (high); 2-bit values, four per byte.
void dequant_q2_k(const uint8_t* b, float* out) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_half(b + 80), dmin = load_half(b + 82);
  for (uint32_t e = 0; e < kQK; ++e) {
    const uint32_t g = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
    const float dl = d * static_cast<float>(scales[e / 16] & 0x0F);
    const float ml = dmin * static_cast<float>(scales[e / 16] >> 4);
    out[e] = dl * static_cast<float>((qs[g * 32 + l] >> shift) & 3) - ml;
  }
}

// Q3_K: 16 six-bit signed scales (low nibbles in bytes 0-7, high pairs in 8-11); 2-bit values
// plus a high bit in hmask that, when clear, subtracts 4.
void dequant_q3_k(const uint8_t* b, float* out) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = load_half(b + 108);
  for (uint32_t e = 0; e < kQK; ++e) {
    const uint32_t s = e / 16;
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F, hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    const float dl = d * static_cast<float>(static_cast<int8_t>((lo | (hi << 4)) - 32));
    const uint32_t g = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
    const int ql = (qs[g * 32 + l] >> shift) & 3;
    const int qh = ((hmask[l] >> (e / 32)) & 1) ^ 1;
    out[e] = dl * static_cast<float>(static_cast<int8_t>(ql - (qh << 2)));
  }
}

void dequant_q8_0(const uint8_t* b, float* out) {
  const float d = load_half(b);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// The 6-bit scales and mins of the 8 sub-blocks of a Q4_K/Q5_K super-block (12 bytes).
void k_scale_min(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[j + 4] & 0x3F;
    sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30);
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
  }
}

// Q4_K and Q5_K: each 32-byte chunk c of qs holds sub-block 2c in its low nibbles and 2c+1 in
// its high ones; Q5_K's fifth bit of sub-block j is bit j of qh[l].
void dequant_q45_k(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* out) {
  const float d = load_half(b), dmin = load_half(b + 2);
  uint8_t sc[8], mn[8];
  k_scale_min(b + 4, sc, mn);
  for (int j = 0; j < 8; ++j) {
    const float dj = d * static_cast<float>(sc[j]);
    const float mj = dmin * static_cast<float>(mn[j]);
    const uint8_t* q = qs + (j / 2) * 32;
    const int shift = (j % 2) * 4;
    for (int l = 0; l < 32; ++l) {
      int v = (q[l] >> shift) & 0x0F;
      if (qh) v |= ((qh[l] >> j) & 1) << 4;
      out[j * 32 + l] = dj * static_cast<float>(v) - mj;
    }
  }
}

void dequant_q6_k(const uint8_t* b, float* out) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_half(b + 208);
  for (uint32_t e = 0; e < kQK; ++e) {
    const uint32_t g = e / 128, r = e % 128;
    const int low = (ql[g * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int high = (qh[g * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
    const float scale = d * static_cast<float>(scales[e / 16]);
    out[e] = scale * static_cast<float>(static_cast<int8_t>((low | (high << 4)) - 32));
  }
}

}  // namespace

const TypeTraits* type_traits(uint32_t id) {
  for (const auto& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == id) return &t;
  }
  return nullptr;
}

const TypeTraits& type_traits(GgmlType t) {
  const TypeTraits* traits = type_traits(static_cast<uint32_t>(t));
  FTUNE_CHECK(traits != nullptr, "unknown ggml type " + std::to_string(static_cast<uint32_t>(t)));
  return *traits;
}

std::string dequantizable_type_names() {
  std::string out;
  for (const auto& t : kTypes) {
    if (t.dequantizable) out += (out.empty() ? "" : ", ") + std::string(t.name);
  }
  return out;
}

#if defined(__clang__) && __clang_major__ < 15
// clang before 15 has no _Float16 on x86-64, and the fuzz targets (scripts/fuzz.sh) build with
// Debian 12's clang 14: the same conversions in integer arithmetic. half -> float is exact;
// float -> half rounds to nearest even and keeps NaNs quiet, as the hardware conversion does.
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
    return sign ? -v : v;
  }
  if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);
  else bits = sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (x < 0x38800000u) {  // a half subnormal: |f| * 2^24 is exact, round it to an integer
    float a;
    std::memcpy(&a, &x, 4);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f)));
  }
  uint32_t h = (((x >> 23) - 112) << 10) | ((x & 0x7fffffu) >> 13);
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | h);
}
#else
float half_to_float(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

uint16_t float_to_half(float f) {
  const _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, 2);
  return h;
}

#endif

uint16_t float_to_bf16(float f) {
  uint32_t n;
  std::memcpy(&n, &f, 4);
  if ((n & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((n >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((static_cast<uint64_t>(n) + 0x7fffu + ((n >> 16) & 1)) >> 16);
}

float bf16_to_float(uint16_t b) {
  const uint32_t n = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &n, 4);
  return f;
}

void dequantize(GgmlType t, const uint8_t* src, uint64_t n, float* dst) {
  const TypeTraits& tr = type_traits(t);
  FTUNE_CHECK(tr.dequantizable, std::string("no dequantiser for ") + tr.name);
  FTUNE_CHECK(n % tr.block_elems == 0, "element count not a multiple of the block size");
  const uint64_t blocks = n / tr.block_elems;
  switch (t) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case GgmlType::kF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = load_half(src + 2 * i);
      return;
    case GgmlType::kBF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(load_u16(src + 2 * i));
      return;
    default:
      break;
  }
  for (uint64_t k = 0; k < blocks; ++k) {
    const uint8_t* b = src + k * tr.block_bytes;
    float* out = dst + k * tr.block_elems;
    switch (t) {
      case GgmlType::kQ4_0: dequant_q4_0(b, out); break;
      case GgmlType::kQ4_1: dequant_q4_1(b, out); break;
      case GgmlType::kQ5_0: dequant_q5(b, /*with_min=*/false, out); break;
      case GgmlType::kQ5_1: dequant_q5(b, /*with_min=*/true, out); break;
      case GgmlType::kQ8_0: dequant_q8_0(b, out); break;
      case GgmlType::kQ2_K: dequant_q2_k(b, out); break;
      case GgmlType::kQ3_K: dequant_q3_k(b, out); break;
      case GgmlType::kQ4_K: dequant_q45_k(b, nullptr, b + 16, out); break;
      case GgmlType::kQ5_K: dequant_q45_k(b, b + 16, b + 48, out); break;
      case GgmlType::kQ6_K: dequant_q6_k(b, out); break;
      default: FTUNE_CHECK(false, std::string("no dequantiser for ") + tr.name);
    }
  }
}

void quantize_q8_0(const float* src, uint64_t n, uint8_t* dst) {
  FTUNE_CHECK(n % 32 == 0, "Q8_0 needs a multiple of 32 values");
  for (uint64_t k = 0; k < n / 32; ++k) {
    const float* x = src + k * 32;
    uint8_t* b = dst + k * 34;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d == 0 ? 0.0f : 1.0f / d;
    const uint16_t dh = float_to_half(d);
    std::memcpy(b, &dh, 2);
    for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
  }
}

}  // namespace ftune::gguf
