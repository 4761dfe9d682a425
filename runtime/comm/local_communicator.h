// Backend `local`: one process, no MPI. A reduction over one rank is the identity (avg of one
// value is that value), so every collective is a copy; Work is done when returned.
#pragma once

#include "runtime/comm/communicator.h"

namespace ftune::comm {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "local"; }
  Device device() const override { return Device::cpu; }

  std::unique_ptr<Work> all_reduce_async(const void* send, void* recv, size_t count,
                                         DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                         DType dtype) override;
  std::unique_ptr<Work> broadcast_async(void* buf, size_t count, DType dtype,
                                        int root) override;
  void barrier() override {}
  // color < 0 (not a member) gives null, as with the other backends.
  std::unique_ptr<Communicator> split(int color, int key) override;
  void set_phase(Phase) override {}
  [[noreturn]] void abort(const std::string& why) override;
};

}  // namespace ftune::comm
