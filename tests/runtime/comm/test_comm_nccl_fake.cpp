// The nccl backend's control flow without a GPU: comm_rank under mpirun with stand-in
// libnccl.so.2 and libcudart.so.13 preloaded (fake/: host memory as device memory, every
// collective a one-rank copy). Covers the id broadcast over MPI, non-blocking init, split,
// finalize/destroy, the watchdog's timeout (line, then ncclCommAbort) and asynchronous errors.
// The GPU itself is tested by test_comm_nccl (label gpu).
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace ftune::test {
namespace {

struct FakeRun {
  ProcessResult r;
  double seconds = 0;
};

FakeRun fake_mpirun(int np, const std::string& args, const std::string& fake_mode = "ok") {
  std::string preload = std::string(FTUNE_FAKE_NCCL) + ":" + FTUNE_FAKE_CUDART;
  auto t0 = std::chrono::steady_clock::now();
  FakeRun run;
  run.r = run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -x LD_PRELOAD=" +
                    shell_quote(preload) + " -x FAKE_NCCL_MODE=" + fake_mode + " -np " + std::to_string(np) +
                    " " + shell_quote(FTUNE_COMM_RANK) + " " + args);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

TEST(CommNcclFake, EveryCollectiveAndSplitGoThroughTheBackend) {
  for (const char* mode : {"ops", "split"}) {
    FakeRun run = fake_mpirun(1, std::string(mode) + " nccl");
    const std::string& out = run.r.output;
    EXPECT_EQ(run.r.exit_code, 0) << out;
    EXPECT_NE(out.find("OK " + std::string(mode)), std::string::npos) << out;
    EXPECT_NE(out.find("backend nccl"), std::string::npos) << out;
    EXPECT_NE(out.find("[comm] nccl 2."), std::string::npos) << out;
    EXPECT_NE(out.find("fake/libnccl.so.2"), std::string::npos) << "the preloaded copy was not reused: " << out;
    EXPECT_NE(out.find("fake-nccl: ncclCommFinalize"), std::string::npos) << out;
    EXPECT_NE(out.find("fake-nccl: ncclCommDestroy"), std::string::npos) << out;
    EXPECT_EQ(out.find("ncclCommAbort"), std::string::npos) << out;
  }
}

TEST(CommNcclFake, TwoRanksShareTheIdOverMpi) {
  // The fake refuses an id that is not rank 0's, so both inits passing means it was broadcast.
  FakeRun run = fake_mpirun(2, "placement nccl");
  EXPECT_EQ(run.r.exit_code, 0) << run.r.output;
  EXPECT_NE(run.r.output.find("[comm] rank 1/2 on "), std::string::npos) << run.r.output;
  EXPECT_NE(run.r.output.find("backend nccl, device cuda"), std::string::npos) << run.r.output;
}

TEST(CommNcclFake, AHungCollectiveIsNamedThenAbortedByTheWatchdog) {
  FakeRun run = fake_mpirun(1, "nccl-hang nccl --timeout 1", "hang");
  const std::string& out = run.r.output;
  EXPECT_NE(run.r.exit_code, 0) << out;
  EXPECT_LT(run.seconds, 6.0) << out;
  size_t line = out.find("[comm] timeout: all_reduce(sum) f32 x16 #");
  ASSERT_NE(line, std::string::npos) << out;
  EXPECT_NE(out.find("(step phase timeout) on rank 0 on "), std::string::npos) << out;
  size_t abort = out.find("fake-nccl: ncclCommAbort");
  ASSERT_NE(abort, std::string::npos) << out;
  EXPECT_LT(line, abort) << "the line must come before the abort: " << out;
  EXPECT_EQ(out.find("did not end the job"), std::string::npos) << out;
}

TEST(CommNcclFake, AnAsynchronousNcclErrorEndsTheJob) {
  FakeRun run = fake_mpirun(1, "nccl-async-error nccl --timeout 30", "async-error");
  const std::string& out = run.r.output;
  EXPECT_NE(run.r.exit_code, 0) << out;
  EXPECT_LT(run.seconds, 6.0) << out;
  EXPECT_NE(out.find("[comm] NCCL error on rank 0 on "), std::string::npos) << out;
  EXPECT_NE(out.find("remote process exited or there was a network error: fake peer vanished"),
            std::string::npos) << out;
  EXPECT_NE(out.find("fake-nccl: ncclCommAbort"), std::string::npos) << out;
}

}  // namespace
}  // namespace ftune::test
