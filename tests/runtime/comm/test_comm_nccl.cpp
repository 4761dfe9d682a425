// Backend `nccl` on real GPUs (label gpu): comm_nccl_rank under mpirun, one rank per GPU.
// Skips, saying why, on a machine without a CUDA device or a build without the backend.
#include "runtime/comm/factory.h"
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

namespace ftune::test {
namespace {

ProcessResult run_ranks(int np) {
  return run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np " +
                   std::to_string(np) + " " + shell_quote(FTUNE_COMM_NCCL_RANK));
}

TEST(CommNcclGpu, EveryCollectiveDtypeAndOpOnDeviceBuffers) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend";
  auto r = run_ranks(1);
  if (r.output.find("SKIP: ") != std::string::npos) GTEST_SKIP() << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK nccl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("backend nccl, device cuda"), std::string::npos) << r.output;
}

TEST(CommNcclGpu, TwoRanksWhereTwoGpusExist) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend";
  auto probe = run_shell("nvidia-smi -L 2>/dev/null | grep -c '^GPU'");
  if (std::atoi(probe.output.c_str()) < 2) GTEST_SKIP() << "needs two GPUs (nvidia-smi -L: " << probe.output << ")";
  auto r = run_ranks(2);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK nccl"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
