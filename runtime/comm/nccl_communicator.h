// Backend `nccl` (CUDA buffers). No NCCL or CUDA type here: the factory is the only caller.
//
// - Runs its collectives on its own non-blocking CUDA stream, ordered against the caller's
//   compute stream (set_compute_stream, default the legacy default stream) with events.
// - The NCCL id travels over MPI: the host side is an MpiCommunicator over the same ranks,
//   which also serves barrier() (a host-side barrier: it does not wait for GPU work), split(),
//   and the arrival board that names missing ranks.
// - A watchdog thread polls the collectives' done events and ncclCommGetAsyncError; past the
//   phase timeout, or on an asynchronous NCCL error, it calls ncclCommAbort, prints one line
//   and ends the job (MPI_Abort).
// - Binds the device local_rank % devices; needs MPI even for one rank (mpirun -np 1, or
//   FTUNE_COMM_MPI=1).
#pragma once

#include "runtime/comm/communicator.h"

#include <memory>
#include <string>

namespace ftune::comm {

std::unique_ptr<Communicator> make_nccl_communicator(const World& world, const Timeouts& timeouts);
std::string nccl_library_description();  // see nccl_library() in factory.h

}  // namespace ftune::comm
