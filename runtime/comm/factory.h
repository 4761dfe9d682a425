// The one place that picks a communicator backend.
#pragma once

#include "runtime/comm/communicator.h"

#include <memory>
#include <string>

namespace ftune::comm {

// backend: "local" (one process), "mpi" (host buffers over MPI), "nccl" (CUDA buffers; needs a
// build with NCCL) or "auto" (mpi when world.size > 1, else local; nccl is never implied:
// only the caller knows its buffers are on the GPU). Throws ftune::Error naming the rank and
// what to change when the backend cannot serve this world.
std::unique_ptr<Communicator> make_communicator(const std::string& backend, const World& world,
                                                const Timeouts& timeouts);

bool nccl_available();  // this build has the nccl backend

// "nccl 2.28.9 from /…/nvidia/nccl/lib/libnccl.so.2": the library the nccl backend uses (the
// one already in the process, e.g. LibTorch's, else the configured one); loads it without
// touching a GPU. Throws ftune::Error when this build has no nccl backend or it cannot load.
std::string nccl_library();

}  // namespace ftune::comm
