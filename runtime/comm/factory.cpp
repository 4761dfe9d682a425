// The only file with #ifdef: the nccl backend exists only where CMake found NCCL and CUDA.
#include "runtime/comm/factory.h"

#include "common/error.h"
#include "runtime/comm/local_communicator.h"
#include "runtime/comm/mpi_communicator.h"
#ifdef FTUNE_COMM_HAVE_NCCL
#include "runtime/comm/nccl_communicator.h"
#endif

namespace ftune::comm {
namespace {

std::string where(const World& w) {
  return "rank " + std::to_string(w.rank) + " on " + w.host;
}

void check_timeouts(const Timeouts& t, const World& w) {
  if (!(t.startup_s > 0) || !(t.step_s > 0) || !(t.save_s > 0)) {
    throw Error("[comm] timeouts must be positive seconds (startup " + std::to_string(t.startup_s) +
                ", step " + std::to_string(t.step_s) + ", save " + std::to_string(t.save_s) +
                ") on " + where(w) + ": fix --comm.*_timeout");
  }
}

}  // namespace

bool nccl_available() {
#ifdef FTUNE_COMM_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::string nccl_library() {
#ifdef FTUNE_COMM_HAVE_NCCL
  return nccl_library_description();
#else
  throw Error("[comm] this build has no nccl backend (CMake found no nccl.h or CUDA headers)");
#endif
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, const World& world,
                                                const Timeouts& timeouts) {
  check_timeouts(timeouts, world);
  std::string chosen = backend == "auto" ? (world.size > 1 ? "mpi" : "local") : backend;
  if (chosen == "local") {
    if (world.size != 1) {
      throw Error("[comm] backend local runs one process, but this job has " +
                  std::to_string(world.size) + " ranks (" + where(world) +
                  "): use backend mpi, nccl or auto");
    }
    return std::make_unique<LocalCommunicator>();
  }
  if (chosen == "mpi") return MpiCommunicator::create(timeouts);
  if (chosen == "nccl") {
#ifdef FTUNE_COMM_HAVE_NCCL
    return make_nccl_communicator(world, timeouts);
#else
    throw Error("[comm] backend nccl is not in this build (CMake found no nccl.h/libnccl.so.2 or "
                "CUDA runtime; " + where(world) + "): rebuild with FTUNE_COMM_NCCL=ON, or use "
                "backend mpi");
#endif
  }
  throw Error("[comm] unknown communicator backend '" + backend + "' (" + where(world) +
              "): use local, mpi, nccl or auto");
}

}  // namespace ftune::comm
