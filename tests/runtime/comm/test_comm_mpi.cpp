// Backend `mpi` under real mpirun: every collective x dtype x op on 2, 3 and 4 ranks, the
// chunked paths (chunk limit lowered), split, overlapping async work, placement lines, and the
// fault cases: a rank killed, stopped or throwing ends the whole job within the timeout, with
// one line that names the collective and the rank.
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace ftune::test {
namespace {

std::string mpirun(int np, const std::string& args, const std::string& mpirun_options = "") {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe " +
         mpirun_options + " -np " + std::to_string(np) + " " + shell_quote(FTUNE_COMM_RANK) + " " + args;
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

class CommMpiOps : public testing::TestWithParam<int> {};

TEST_P(CommMpiOps, EveryCollectiveDtypeAndOpMatchesTheReference) {
  int np = GetParam();
  auto r = run_shell(mpirun(np, "ops mpi"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("over " + std::to_string(np) + " ranks, backend mpi"), std::string::npos)
      << r.output;
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommMpiOps, testing::Values(2, 3, 4));

TEST(CommMpi, ChunkedCallsGiveTheSameResults) {
  // 37-element buffers in pieces of 5: every collective takes its chunked path.
  auto r = run_shell(mpirun(3, "ops mpi --chunk 5"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK ops"), std::string::npos) << r.output;
}

TEST(CommMpi, SplitIntoRowsAndColumnsOfTwoByTwo) {
  auto r = run_shell(mpirun(4, "split mpi"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK split"), std::string::npos) << r.output;
}

TEST(CommMpi, SplitWithAnOddRankCount) {
  auto r = run_shell(mpirun(3, "split mpi --chunk 7"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK split"), std::string::npos) << r.output;
}

TEST(CommMpi, OverlappingAsyncCollectives) {
  auto r = run_shell(mpirun(3, "async mpi"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK async"), std::string::npos) << r.output;
  r = run_shell(mpirun(2, "async mpi --chunk 1000"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK async"), std::string::npos) << r.output;
}

TEST(CommMpi, AutoPicksMpiAndEachRankPrintsItsPlacement) {
  auto r = run_shell(mpirun(2, "placement auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  for (int rank = 0; rank < 2; ++rank) {
    std::string line = "[comm] rank " + std::to_string(rank) + "/2 on " + host + ", local " +
                       std::to_string(rank) + "/2, node 0/1, backend mpi, device cpu";
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
}

TEST(CommMpi, PretendNodesGiveNodeAndLocalRanks) {
  auto r = run_shell(mpirun(4, "placement mpi", "-x FTUNE_COMM_RANKS_PER_NODE=2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 2/4 on "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", local 0/2, node 1/2, backend mpi"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", local 1/2, node 1/2, backend mpi"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", local 1/2, node 0/2, backend mpi"), std::string::npos) << r.output;
}

TEST(CommMpi, SplitAndOpsAcrossPretendNodes) {
  auto r = run_shell(mpirun(4, "split mpi", "-x FTUNE_COMM_RANKS_PER_NODE=2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK split"), std::string::npos) << r.output;
}

TEST(CommMpi, AnMpiErrorNamesTheCallMpisReasonAndTheRank) {
  auto r = run_shell(mpirun(2, "mpi-error mpi"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("caught: [comm] MPI_Comm_rank(MPI_COMM_NULL, &r) failed: MPI_ERR_COMM"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(rank 1 on "), std::string::npos) << r.output;
}

// ---- faults ------------------------------------------------------------------------------------

struct FaultRun {
  ProcessResult result;
  double seconds = 0;
  std::vector<int> leftover;  // pids of ranks still alive after mpirun returned
  size_t pids = 0;            // ranks that wrote their pid
};

// Runs a fault mode on 3 ranks with a 2 s step timeout; afterwards continues and kills any
// rank that survived, so that no stopped process outlives the test.
FaultRun run_fault(const std::string& mode, const std::string& mpirun_options = "", int np = 3,
                   const std::string& extra_args = "") {
  TempDir dir;
  FaultRun f;
  auto t0 = std::chrono::steady_clock::now();
  f.result = run_shell(mpirun(np, mode + " mpi --timeout 2 " + extra_args + " --pid-dir " + shell_quote(dir.path()),
                              mpirun_options));
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int> pids;
  for (int rank = 0; rank < np; ++rank) {
    std::ifstream in(dir.file("pid." + std::to_string(rank)));
    int pid = 0;
    if (in >> pid && pid > 0) pids.push_back(pid);
  }
  f.pids = pids.size();
  // mpirun may return while its daemon is still taking the last ranks down: allow 2 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int pid : pids) {
    while (process_alive(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (process_alive(pid)) {
      f.leftover.push_back(pid);
      kill(pid, SIGCONT);
      kill(pid, SIGKILL);
    }
  }
  return f;
}

TEST(CommMpiFault, AStoppedRankIsNamedAndTheJobEndsWithinTheTimeout) {
  FaultRun f = run_fault("fault-stop");
  EXPECT_EQ(f.pids, 3u) << f.result.output;
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_GT(f.seconds, 1.9) << "gave up before the 2 s timeout: " << f.result.output;
  EXPECT_EQ(count_of(f.result.output, "[comm] timeout:"), 1u) << f.result.output;
  EXPECT_NE(f.result.output.find("[comm] timeout: all_reduce(avg) f32 x1024 #12 on world"),
            std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("not arrived: rank 2 (last entered #11, stopped"),
            std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, ARankStoppedInsideACollectiveIsNamed) {
  FaultRun f = run_fault("fault-stop-inside");
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_EQ(count_of(f.result.output, "[comm] timeout:"), 1u) << f.result.output;
  // Whether the peers finish #12 without it depends on MPI's algorithm; either way rank 2 is
  // named as stopped.
  EXPECT_NE(f.result.output.find("rank 2 ("), std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("stopped, active"), std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, ARankThatNeverStartsEndsTheJobAtTheStartupTimeout) {
  FaultRun f = run_fault("slow-start", "", 3, "--startup-timeout 2");
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_GT(f.seconds, 1.9) << f.result.output;
  EXPECT_LT(f.seconds, 6.5) << "the late rank sleeps 7 s: " << f.result.output;
  EXPECT_NE(f.result.output.find("ranks reached communicator creation within 2.0 s (startup phase"),
            std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, OnTwoNodesTheCulpritsNodeNamesIt) {
  // 4 ranks as 2 nodes of 2: rank 3 stops; only rank 2 can see it, and reports first while
  // ranks 0-1, which see no culprit on their node, hold back.
  FaultRun f = run_fault("fault-stop", "-x FTUNE_COMM_RANKS_PER_NODE=2", 4);
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_EQ(count_of(f.result.output, "[comm] timeout:"), 1u) << f.result.output;
  EXPECT_NE(f.result.output.find("on rank 2 on "), std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("not arrived: rank 3 (last entered #11, stopped"),
            std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("ranks 0-1 are on other nodes"), std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, MismatchedCollectivesAreCalledSo) {
  // Rank 2 calls all_gather where the others call all_reduce.
  FaultRun f = run_fault("fault-mismatch");
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_EQ(count_of(f.result.output, "[comm] timeout:"), 1u) << f.result.output;
  bool named = f.result.output.find("mismatched collectives: rank 2 called #12 as all_gather f32 x1024, "
                                   "this rank as all_reduce(avg) f32 x1024") != std::string::npos ||
               f.result.output.find("mismatched collectives: rank 0 called #12 as all_reduce(avg) f32 x1024, "
                                   "this rank as all_gather f32 x1024") != std::string::npos ||
               // reported by rank 2 after the others' all_reduce matched its all_gather
               f.result.output.find("ranks 0-1 finished #12 without this rank (different "
                                    "collectives on different ranks?)") != std::string::npos;
  EXPECT_TRUE(named) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, EachPhaseHasItsOwnTimeout) {
  // Step timeout 1 s, save timeout 10 s; the last rank comes 1.7 s late twice.
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_shell(mpirun(3, "phases mpi --timeout 1"));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK save phase waited"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(step phase timeout)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not arrived: rank 2 (last entered #1, running"), std::string::npos) << r.output;
  EXPECT_LT(s, 8.0) << r.output;
}

TEST(CommMpiFault, NcclWithoutAGpuEndsTheJobWithTheReason) {
  auto probe = run_shell("nvidia-smi -L 2>/dev/null | grep -c '^GPU'");
  if (std::atoi(probe.output.c_str()) > 0) GTEST_SKIP() << "this machine has a GPU";
  auto r = run_shell(mpirun(2, "ops nccl"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  bool why = r.output.find("backend nccl needs a CUDA device") != std::string::npos ||
             r.output.find("backend nccl is not in this build") != std::string::npos;
  EXPECT_TRUE(why) << r.output;
  EXPECT_NE(r.output.find("[rank "), std::string::npos) << r.output;
}

TEST(CommMpiFault, AKilledRankEndsTheJobThroughMpirun) {
  // mpirun itself takes the job down as soon as a rank dies, before any timeout.
  FaultRun f = run_fault("fault-kill");
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_NE(f.result.output.find("rank 2 with PID"), std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("signal 9"), std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, AKilledRankIsNamedWhenTheLauncherLetsTheOthersRun) {
  // As under srun without --kill-on-bad-exit: the survivors' timeout ends the job.
  FaultRun f = run_fault("fault-kill", "--mca orte_abort_on_non_zero_status 0");
  EXPECT_NE(f.result.exit_code, 0) << f.result.output;
  EXPECT_GT(f.seconds, 1.9) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_EQ(count_of(f.result.output, "[comm] timeout:"), 1u) << f.result.output;
  EXPECT_NE(f.result.output.find("[comm] timeout: all_reduce(avg) f32 x1024 #12 on world"),
            std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("not arrived: rank 2 (last entered #11, process gone"),
            std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, AnExceptionOnOneRankEndsTheJobWithItsMessage) {
  FaultRun f = run_fault("fault-throw");
  EXPECT_EQ(f.result.exit_code, 1) << f.result.output;
  EXPECT_LT(f.seconds, 8.0) << f.result.output;
  EXPECT_NE(f.result.output.find("] injected fault before collective #12"), std::string::npos)
      << f.result.output;
  EXPECT_NE(f.result.output.find("[rank 2 on "), std::string::npos) << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

TEST(CommMpiFault, AnExceptionWithACollectivePendingEndsTheJobAtOnce) {
  FaultRun f = run_fault("fault-throw-pending");
  EXPECT_EQ(f.result.exit_code, 1) << f.result.output;
  EXPECT_LT(f.seconds, 1.9) << "waited for the 2 s timeout: " << f.result.output;
  EXPECT_NE(f.result.output.find("[rank 2 on "), std::string::npos) << f.result.output;
  EXPECT_NE(f.result.output.find("] injected fault with collective #12 pending"), std::string::npos)
      << f.result.output;
  EXPECT_TRUE(f.leftover.empty()) << f.leftover.size() << " ranks outlived the job";
}

}  // namespace
}  // namespace ftune::test
