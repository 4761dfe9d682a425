// Collectives on LibTorch tensors, over any Communicator: header-only, so that ftune_comm
// itself links no LibTorch; include it from code that already holds tensors.
//
// Tensors must be contiguous, of a communicator dtype, and on the communicator's device (CPU
// for local and mpi, CUDA for nccl). With nccl, tell the communicator the stream the tensors
// are used on first: c.set_compute_stream(at::cuda::getCurrentCUDAStream().stream()).
#pragma once

#include "common/error.h"
#include "runtime/comm/communicator.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace ftune::comm {

inline DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::f32;
    case at::kBFloat16: return DType::bf16;
    case at::kHalf: return DType::f16;
    case at::kInt: return DType::i32;
    case at::kLong: return DType::i64;
    case at::kByte: return DType::u8;
    default:
      throw Error(std::string("[comm] tensors of ") + c10::toString(t.scalar_type()) +
                  " cannot be communicated: convert to float32, bfloat16, float16, int32, int64 or uint8");
  }
}

// Throws unless `t` can go through `c` as it is.
inline void check_tensor(const Communicator& c, const at::Tensor& t, const char* what) {
  std::string where = std::string("[comm] ") + what + " on backend " + c.backend() + ": ";
  if (!t.defined()) throw Error(where + "the tensor is undefined");
  if (!t.is_contiguous()) throw Error(where + "the tensor is not contiguous: pass t.contiguous()");
  bool cuda = c.device() == Device::cuda;
  if (t.is_cuda() != cuda) {
    throw Error(where + "the tensor is on " + t.device().str() + ", the communicator on " +
                (cuda ? "cuda" : "cpu") + ": move it, or use backend " + (t.is_cuda() ? "nccl" : "mpi"));
  }
  dtype_of(t);
}

inline void check_sizes(const at::Tensor& in, const at::Tensor& out, int64_t in_per_out,
                        const char* what) {
  if (in.scalar_type() != out.scalar_type()) {
    throw Error(std::string("[comm] ") + what + ": input and output dtypes differ (" +
                c10::toString(in.scalar_type()) + " vs " + c10::toString(out.scalar_type()) + ")");
  }
  if (in.numel() != out.numel() * in_per_out && in.numel() * in_per_out != out.numel()) {
    throw Error(std::string("[comm] ") + what + ": " + std::to_string(in.numel()) + " input and " +
                std::to_string(out.numel()) + " output elements; one must be " +
                std::to_string(in_per_out) + "x the other");
  }
}

// In place.
inline std::unique_ptr<Work> all_reduce_async(Communicator& c, at::Tensor& t, ReduceOp op) {
  check_tensor(c, t, "all_reduce");
  return c.all_reduce_async(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), dtype_of(t), op);
}

// `in` holds size() blocks of out.numel() elements; rank r receives block r.
inline std::unique_ptr<Work> reduce_scatter_async(Communicator& c, const at::Tensor& in,
                                                  at::Tensor& out, ReduceOp op) {
  check_tensor(c, in, "reduce_scatter");
  check_tensor(c, out, "reduce_scatter");
  check_sizes(in, out, c.size(), "reduce_scatter");
  if (in.numel() != out.numel() * c.size()) throw Error("[comm] reduce_scatter: input must be size() x output");
  return c.reduce_scatter_async(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                dtype_of(in), op);
}

// `out` receives size() blocks of in.numel() elements, block r from rank r.
inline std::unique_ptr<Work> all_gather_async(Communicator& c, const at::Tensor& in, at::Tensor& out) {
  check_tensor(c, in, "all_gather");
  check_tensor(c, out, "all_gather");
  check_sizes(in, out, c.size(), "all_gather");
  if (out.numel() != in.numel() * c.size()) throw Error("[comm] all_gather: output must be size() x input");
  return c.all_gather_async(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), dtype_of(in));
}

inline std::unique_ptr<Work> broadcast_async(Communicator& c, at::Tensor& t, int root) {
  check_tensor(c, t, "broadcast");
  return c.broadcast_async(t.data_ptr(), static_cast<size_t>(t.numel()), dtype_of(t), root);
}

inline void all_reduce(Communicator& c, at::Tensor& t, ReduceOp op) { all_reduce_async(c, t, op)->wait(); }
inline void reduce_scatter(Communicator& c, const at::Tensor& in, at::Tensor& out, ReduceOp op) {
  reduce_scatter_async(c, in, out, op)->wait();
}
inline void all_gather(Communicator& c, const at::Tensor& in, at::Tensor& out) {
  all_gather_async(c, in, out)->wait();
}
inline void broadcast(Communicator& c, at::Tensor& t, int root) { broadcast_async(c, t, root)->wait(); }

}  // namespace ftune::comm
