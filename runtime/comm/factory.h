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

}  // namespace ftune::comm
