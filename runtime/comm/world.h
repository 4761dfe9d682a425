// This process's place in the job (World, in communicator.h): MPI is initialised here, once,
// when a launcher started the process (mpirun, srun, hydra); otherwise the world is rank 0 of 1
// and MPI is never touched. Also the guard every main() runs its body under, so that an error
// on one rank ends the whole job instead of leaving its peers waiting.
#pragma once

#include "runtime/comm/communicator.h"

#include <functional>
#include <string>

namespace ftune::comm {

// The launcher that started this process, from its environment ("OMPI_COMM_WORLD_SIZE",
// "PMIX_RANK", "SLURM_STEP_NUM_TASKS", ...), or "" when none did. FTUNE_COMM_MPI=0 or 1
// overrides the detection.
std::string mpi_launcher_env();

// Initialises MPI on the first call when a launcher is detected (MPI_THREAD_MULTIPLE asked,
// MPI_ERRORS_RETURN on MPI_COMM_WORLD), learns rank, local rank (MPI_COMM_TYPE_SHARED), node
// and host, and calls ftune::set_process_identity. Later calls return the same World. MPI is
// finalised when the process exits normally, if this call initialised it.
World init_world();

// True when init_world() (or the caller) initialised MPI and it is not finalised yet.
bool mpi_active();

// "[comm] rank 1/4 on host, local 1/2, node 0/2, backend mpi, device cpu"
std::string placement_line(const World& world, const Communicator& comm);
void print_placement(const World& world, const Communicator& comm);  // stderr, every rank

// Runs `body` and returns its exit code. If it throws, prints "[rank r on host] message" and,
// under MPI, ends every rank of the job with MPI_Abort(…, 1); alone, returns 1.
int run_or_abort(const std::function<int()>& body);

// Ends the job now: prints `line` (one line, as given) on stderr, then MPI_Abort(…, code)
// under MPI or _exit(code) alone. Never returns.
[[noreturn]] void abort_job(const std::string& line, int code = 1);

}  // namespace ftune::comm
