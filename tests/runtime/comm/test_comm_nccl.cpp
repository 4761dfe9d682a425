// Backend `nccl` on real GPUs (label gpu): comm_nccl_rank under mpirun, one rank per GPU.
// Skips, saying why, on a machine without a CUDA device or a build without the backend.
#include "runtime/comm/factory.h"
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ftune::test {
namespace {

ProcessResult run_ranks(int np) {
  return run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np " +
                   std::to_string(np) + " " + shell_quote(FTUNE_COMM_NCCL_RANK));
}

// nvidia-smi's count, or 1 where it is missing but a device node exists.
int gpus() {
  auto probe = run_shell("nvidia-smi -L 2>/dev/null | grep -c '^GPU'");
  int n = std::atoi(probe.output.c_str());
  if (n == 0 && run_shell("command -v nvidia-smi").exit_code != 0 &&
      run_shell("test -e /dev/nvidia0").exit_code == 0) {
    n = 1;
  }
  return n;
}

TEST(CommNcclGpu, EveryCollectiveDtypeAndOpOnDeviceBuffers) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend";
  if (gpus() < 1) GTEST_SKIP() << "no GPU here (nvidia-smi -L lists none)";
  auto r = run_ranks(1);
  if (r.output.find("SKIP: ") != std::string::npos) GTEST_SKIP() << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK nccl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("backend nccl, device cuda"), std::string::npos) << r.output;
}

TEST(CommNcclGpu, TwoRanksWhereTwoGpusExist) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend";
  if (gpus() < 2) GTEST_SKIP() << "needs two GPUs (nvidia-smi -L lists " << gpus() << ")";
  auto r = run_ranks(2);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK nccl"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
