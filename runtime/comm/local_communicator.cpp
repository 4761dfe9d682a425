#include "runtime/comm/local_communicator.h"

#include "common/error.h"
#include "runtime/comm/backend_util.h"
#include "runtime/comm/world.h"

#include <cstring>

namespace ftune::comm {
namespace {
void copy(const void* src, void* dst, size_t count, DType dtype) {
  // memmove: send == recv (in place) is allowed
  if (src != dst && count > 0) std::memmove(dst, src, count * dtype_size(dtype));
}
}  // namespace

std::unique_ptr<Work> LocalCommunicator::all_reduce_async(const void* send, void* recv,
                                                          size_t count, DType dtype,
                                                          ReduceOp op) {
  check_reduce_args(dtype, op, "all_reduce");
  copy(send, recv, count, dtype);
  return completed_work();
}

std::unique_ptr<Work> LocalCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                              size_t recv_count, DType dtype,
                                                              ReduceOp op) {
  check_reduce_args(dtype, op, "reduce_scatter");
  copy(send, recv, recv_count, dtype);
  return completed_work();
}

std::unique_ptr<Work> LocalCommunicator::all_gather_async(const void* send, void* recv,
                                                          size_t send_count, DType dtype) {
  copy(send, recv, send_count, dtype);
  return completed_work();
}

std::unique_ptr<Work> LocalCommunicator::broadcast_async(void*, size_t, DType, int root) {
  check_root(root, 1, "broadcast");
  return completed_work();
}

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int) {
  if (color < 0) return nullptr;
  return std::make_unique<LocalCommunicator>();
}

void LocalCommunicator::abort(const std::string& why) {
  std::string who = ftune::process_identity();
  abort_job("[comm] " + (who.empty() ? std::string("rank 0") : who) + ": " + why, 1);
}

}  // namespace ftune::comm
