// Reference values for communicator tests: what rank r contributes at element i of a buffer of
// each dtype, and what a reduction over `size` ranks must give, computed here (in double or
// int64, rounded once) and never through the code under test.
#pragma once

#include "runtime/comm/communicator.h"
#include "runtime/comm/half.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace ftune::test {

using comm::DType;
using comm::ReduceOp;

constexpr DType kAllDTypes[] = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};
constexpr ReduceOp kAllOps[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min};

// Rank r's element i, exact in its dtype; `salt` varies the pattern between calls.
inline double contribution(DType t, int r, size_t i, int salt) {
  long k = static_cast<long>(i) + 3L * salt;
  switch (t) {
    case DType::f32: return static_cast<double>((r * 7 + k * 3) % 23) - 11 + 0.25 * (r % 4);
    case DType::bf16:
    case DType::f16: return static_cast<double>((r * 5 + k) % 17) - 8 + 0.5 * (r % 2);
    case DType::i32: return (r + 1) * 100000.0 + ((r % 3) ? -1.0 : 1.0) * static_cast<double>(k);
    case DType::i64: return std::ldexp(r + 1, 33) + static_cast<double>(k);  // above 2^32
    case DType::u8: return static_cast<double>((r * 97 + k * 13) % 256);
  }
  return 0;
}

inline void store(DType t, void* buf, size_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case DType::bf16: static_cast<uint16_t*>(buf)[i] = comm::f32_to_bf16(static_cast<float>(v)); break;
    case DType::f16: static_cast<uint16_t*>(buf)[i] = comm::f32_to_f16(static_cast<float>(v)); break;
    case DType::i32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(static_cast<int64_t>(v) & 0xFF); break;
  }
}

inline double load(DType t, const void* buf, size_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(buf)[i];
    case DType::bf16: return comm::bf16_to_f32(static_cast<const uint16_t*>(buf)[i]);
    case DType::f16: return comm::f16_to_f32(static_cast<const uint16_t*>(buf)[i]);
    case DType::i32: return static_cast<double>(static_cast<const int32_t*>(buf)[i]);
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case DType::u8: return static_cast<const uint8_t*>(buf)[i];
  }
  return 0;
}

inline std::vector<uint8_t> filled(DType t, size_t count, int r, int salt) {
  std::vector<uint8_t> b(count * comm::dtype_size(t) + 1);  // +1: never empty
  for (size_t i = 0; i < count; ++i) store(t, b.data(), i, contribution(t, r, i, salt));
  return b;
}

// The reduction over ranks 0..size-1 at element i, stored into `out` at i.
inline void store_reduced(DType t, ReduceOp op, int size, size_t i, int salt, void* out) {
  double acc = contribution(t, 0, i, salt);
  int64_t iacc = static_cast<int64_t>(acc);
  for (int r = 1; r < size; ++r) {
    double v = contribution(t, r, i, salt);
    if (op == ReduceOp::max) acc = std::max(acc, v);
    else if (op == ReduceOp::min) acc = std::min(acc, v);
    else acc += v;
    iacc = op == ReduceOp::max ? std::max<int64_t>(iacc, static_cast<int64_t>(v))
         : op == ReduceOp::min ? std::min<int64_t>(iacc, static_cast<int64_t>(v))
                               : iacc + static_cast<int64_t>(v);
  }
  if (comm::is_integer(t)) {
    store(t, out, i, static_cast<double>(iacc));  // u8 sums wrap mod 256, as MPI_UINT8_T does
    return;
  }
  // avg: the f32 sum (exact for these values) times the f32 reciprocal, rounded once.
  if (op == ReduceOp::avg) acc = static_cast<float>(acc) * (1.0f / static_cast<float>(size));
  store(t, out, i, acc);
}

// Index of the first differing element, or -1.
inline long first_difference(const void* a, const void* b, size_t count, DType t) {
  size_t es = comm::dtype_size(t);
  for (size_t i = 0; i < count; ++i) {
    if (std::memcmp(static_cast<const char*>(a) + i * es, static_cast<const char*>(b) + i * es, es) != 0) {
      return static_cast<long>(i);
    }
  }
  return -1;
}

}  // namespace ftune::test
