#include "runtime/comm/comm_config.h"

#include "common/error.h"

namespace ftune::comm {

void CommConfig::validate() const {
  auto bad = [](const std::string& key, const std::string& why) { throw Error("comm." + key + ": " + why); };
  if (backend != "auto" && backend != "local" && backend != "mpi" && backend != "nccl") {
    bad("backend", "\"" + backend + "\" is not auto, local, mpi or nccl");
  }
  auto positive = [&](const char* key, double v) {
    if (!(v > 0)) bad(key, "must be a positive number of seconds, got " + std::to_string(v));
  };
  positive("startup_timeout_s", startup_timeout_s);
  positive("step_timeout_s", step_timeout_s);
  positive("save_timeout_s", save_timeout_s);
}

}  // namespace ftune::comm
