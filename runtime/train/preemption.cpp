#include "runtime/train/preemption.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <utility>

#include "common/error.h"

namespace ftune::train {
namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_save_requests{0};  // SIGUSR2 since the last step boundary

void on_save_signal(int) {
  g_save_requests.fetch_add(1);
  const char msg[] = "[train] checkpoint requested (SIGUSR2): written at the next step boundary\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
}

// A repeat is the same request: Slurm signals a step's tasks itself and srun passes the same
// signal on, so one preemption can arrive twice. SIGKILL (after Slurm's KillWait) is the hard stop.
void on_stop_signal(int sig) {
  if (g_signal.exchange(sig) != 0) return;
  const char msg[] = "[train] stop signal received: checkpoint at the next step boundary\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
}

// Test hook (tests/slurm): seconds each step boundary waits, so that a tiny run lasts until
// Slurm's time-limit signal arrives (Slurm checks limits only every 30 s).
double test_step_sleep_s() {
  const char* v = std::getenv("FTUNE_TEST_STEP_SLEEP_S");
  return v ? std::atof(v) : 0.0;
}

}  // namespace

void install_stop_signals() {
  for (auto [sig, handler] : {std::pair{SIGUSR1, on_stop_signal}, std::pair{SIGTERM, on_stop_signal},
                              std::pair{SIGUSR2, on_save_signal}}) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // a signal must not fail a read or an MPI poll with EINTR
    sigaction(sig, &sa, nullptr);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

int stop_signal() { return g_signal.load(); }

StepRequests agree_requests(comm::Communicator& comm) {
  if (const double s = test_step_sleep_s(); s > 0)
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
  // Taken before the all-reduce, so a SIGUSR2 arriving during it counts at the next boundary.
  int32_t any[2] = {g_signal.load() != 0 ? 1 : 0, g_save_requests.exchange(0) > 0 ? 1 : 0};
  comm.all_reduce(any, any, 2, comm::DType::i32, comm::ReduceOp::max);
  return {any[0] != 0, any[1] != 0};
}

void write_completion_marker(const std::string& out_dir, int64_t step) {
  const std::string path = out_dir + "/" + kCompleteFile;
  std::ofstream out(path);
  out << "step " << step << "\n";
  if (!out) throw Error("cannot write " + path);
}

}  // namespace ftune::train
