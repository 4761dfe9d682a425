// LibTorch tensors on top of the byte-level communicator (runtime/comm/communicator.h): the
// one mapping from at::ScalarType to comm::DType, and checked tensor collectives.
#pragma once

#include <ATen/ATen.h>

#include "runtime/comm/communicator.h"

namespace ftune::sharding {

comm::DType comm_dtype(at::ScalarType dtype);  // throws ftune::Error for unsupported ones

// In place over the whole (contiguous) tensor.
void all_reduce(comm::Communicator& comm, at::Tensor& t, comm::ReduceOp op = comm::ReduceOp::sum);
// out [size() * in.numel()] <- every rank's `in`, rank order.
std::unique_ptr<comm::Work> all_gather_async(comm::Communicator& comm, const at::Tensor& in,
                                             at::Tensor& out);
// out [in.numel() / size()] <- this rank's block of the sum over ranks of `in`.
void reduce_scatter(comm::Communicator& comm, const at::Tensor& in, at::Tensor& out,
                    comm::ReduceOp op = comm::ReduceOp::sum);

}  // namespace ftune::sharding
