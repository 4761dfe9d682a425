// Preemption and time limits: SIGUSR1 (Slurm's `--signal=B:USR1@lead`, forwarded by the batch
// script) or SIGTERM (preemption, scancel, the time limit) only sets a flag; at the next step
// boundary every rank agrees with one small all-reduce, the run checkpoints and exits with
// kExitRequeue, which the batch script (slurm/train.sbatch.in) turns into `scontrol requeue`;
// the requeued job resumes with --resume auto. Repeats change nothing (SIGINT still ends
// the process at once). A run that finished writes OUT/COMPLETE, so a late requeue does nothing.
// SIGUSR2 asks for a checkpoint on request: written at the next step boundary, and the run goes on.
#pragma once

#include <csignal>
#include <string>

#include "runtime/comm/communicator.h"

namespace ftune::train {

// "Checkpointed on a signal: requeue me." Not a code a crash or MPI_Abort gives (1, 128+n).
constexpr int kExitRequeue = 85;
// The completion marker in the run directory, written once the export is complete.
constexpr const char* kCompleteFile = "COMPLETE";

// Blocks SIGUSR1, SIGTERM and SIGUSR2 until install_stop_signals(): called by `ftune train` before it
// loads libftune_torch.so (about a second), so that a signal arriving then waits for the
// handlers instead of killing the rank. Header-only: it runs in the executable.
inline void defer_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Installs the handlers and unblocks the signals (a pending one is taken now).
void install_stop_signals();

// The signal this rank received (SIGUSR1, SIGTERM), or 0.
int stop_signal();

// What the ranks agreed on at a step boundary: stop (checkpoint and exit for a requeue) when any
// rank received SIGUSR1 or SIGTERM, save (checkpoint and go on) when any received SIGUSR2
// since the last boundary.
struct StepRequests {
  bool stop = false, save = false;
};
// Collective, once per step on every rank: one all-reduce of two integers.
StepRequests agree_requests(comm::Communicator& comm);

// OUT/COMPLETE with the final step; rank 0, after every rank finished.
void write_completion_marker(const std::string& out_dir, int64_t step);

}  // namespace ftune::train
