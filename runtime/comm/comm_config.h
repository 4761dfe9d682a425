// Configuration of the communicator; fields() gives `--comm.*` flags and TOML `[comm]` keys
// through cli::add_section (launcher/cli/config.h), as the other components' structs do.
#pragma once

#include "runtime/comm/communicator.h"

#include <string>

namespace ftune::comm {

struct CommConfig {
  std::string backend = "auto";  // "auto" | "local" | "mpi" | "nccl"
  double startup_timeout_s = 600;  // [s]
  double step_timeout_s = 300;     // [s]
  double save_timeout_s = 1800;    // [s]

  template <class F>
  void fields(F&& f) {
    f("backend", backend, "collectives: auto (mpi for several ranks, else local), local, mpi, nccl");
    f("startup_timeout_s", startup_timeout_s, "seconds a collective may take while the job starts");
    f("step_timeout_s", step_timeout_s, "seconds a collective may take in a step (training, or a data tool tick) before the job is aborted, naming the ranks that did not arrive");
    f("save_timeout_s", save_timeout_s, "seconds a collective may take around checkpoint writes");
  }

  // Throws ftune::Error naming the key and what to change.
  void validate() const;
  Timeouts timeouts() const { return {startup_timeout_s, step_timeout_s, save_timeout_s}; }
};

}  // namespace ftune::comm
