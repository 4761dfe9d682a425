// Pieces the backends share (internal): argument checks and a Work that is already done.
#pragma once

#include "runtime/comm/communicator.h"

#include <memory>
#include <string>

namespace ftune::comm {

// Refuses avg over integers in every backend, so a program that runs on `local` does not
// start failing on `mpi`: an integer mean would silently truncate, so the caller sums and
// divides as it means to.
void check_reduce_args(DType dtype, ReduceOp op, const char* collective);

// A root outside 0 .. size-1 is the caller's bug; say which.
void check_root(int root, int size, const char* collective);

class CompletedWork final : public Work {
 public:
  void wait() override {}
  bool done() override { return true; }
};

inline std::unique_ptr<Work> completed_work() { return std::make_unique<CompletedWork>(); }

}  // namespace ftune::comm
