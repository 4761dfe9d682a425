#include "sharding/comm_tensors.h"

#include "common/error.h"

namespace ftune::sharding {

comm::DType comm_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return comm::DType::f32;
    case at::kBFloat16: return comm::DType::bf16;
    case at::kHalf: return comm::DType::f16;
    case at::kInt: return comm::DType::i32;
    case at::kLong: return comm::DType::i64;
    case at::kByte: return comm::DType::u8;
    default: throw Error(std::string("no collective for dtype ") + c10::toString(dtype));
  }
}

namespace {
void check_contiguous(const at::Tensor& t, const char* what) {
  FTUNE_CHECK(t.defined() && t.is_contiguous(), std::string(what) + " must be contiguous");
}
}  // namespace

void all_reduce(comm::Communicator& comm, at::Tensor& t, comm::ReduceOp op) {
  check_contiguous(t, "all_reduce tensor");
  comm.all_reduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), comm_dtype(t.scalar_type()), op);
}

std::unique_ptr<comm::Work> all_gather_async(comm::Communicator& comm, const at::Tensor& in,
                                             at::Tensor& out) {
  check_contiguous(in, "all_gather input");
  check_contiguous(out, "all_gather output");
  FTUNE_CHECK(out.numel() == in.numel() * comm.size() && out.scalar_type() == in.scalar_type(),
              "all_gather: output must hold size() inputs of the same dtype");
  return comm.all_gather_async(in.data_ptr(), out.data_ptr(), size_t(in.numel()),
                               comm_dtype(in.scalar_type()));
}

void reduce_scatter(comm::Communicator& comm, const at::Tensor& in, at::Tensor& out,
                    comm::ReduceOp op) {
  check_contiguous(in, "reduce_scatter input");
  check_contiguous(out, "reduce_scatter output");
  FTUNE_CHECK(in.numel() == out.numel() * comm.size() && out.scalar_type() == in.scalar_type(),
              "reduce_scatter: input must hold size() outputs of the same dtype");
  comm.reduce_scatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()),
                      comm_dtype(in.scalar_type()), op);
}

}  // namespace ftune::sharding
