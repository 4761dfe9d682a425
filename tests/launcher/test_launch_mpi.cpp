// `ftune launch` under mpirun on CPU: a 2-rank LoRA run and its placement table, the variables
// it forwards, a failing rank's exit code, a killed rank ending the job, --dry-run; and the
// refusals: more local ranks than GPUs, ranks whose configs differ, sbatch missing from PATH.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "tests/launcher/tiny_run.h"
#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

const char* kEnv = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";

ProcessResult launch(const std::string& args, double* seconds = nullptr) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_shell(kEnv + shell_quote(ftune_binary()) + " launch " + args);
  if (seconds) *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

class LaunchMpi : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(make_tiny_run(tmp_)); }
  TempDir tmp_;
};

TEST_F(LaunchMpi, TwoRanksTrainAndRankZeroPrintsThePlacementOnce) {
  const std::string out = tmp_.file("run");
  auto r = launch("-n 2 -- " + tiny_train_args(tmp_, out, 3));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[launch] mpirun -np 2 --oversubscribe --bind-to numa"), std::string::npos) << r.output;
  const size_t table = r.output.find("[comm] placement: 2 rank(s) on 1 node(s)\n  rank  host");
  ASSERT_NE(table, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[comm] placement:", table + 1), std::string::npos) << "printed twice:\n" << r.output;
  EXPECT_NE(r.output.find("\n     0  ", table), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\n     1  ", table), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(out + "/final/adapter_model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(out + "/COMPLETE"));
}

TEST(Launch, ForwardsTheNcclCudaOmpHdf5AndFtuneVariables) {
  auto r = run_shell(std::string(kEnv) + "NCCL_DEBUG=WARN CUDA_MODULE_LOADING=LAZY HDF5_USE_FILE_LOCKING=FALSE "
                     "FTUNE_PROBE=7 UNRELATED_PROBE=1 " + shell_quote(ftune_binary()) +
                     " launch -n 2 -- sh -c 'echo \"rank=$OMPI_COMM_WORLD_RANK $NCCL_DEBUG $CUDA_MODULE_LOADING "
                     "$HDF5_USE_FILE_LOCKING $FTUNE_PROBE $OMP_NUM_THREADS\"'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* x : {"-x NCCL_DEBUG", "-x CUDA_MODULE_LOADING", "-x HDF5_USE_FILE_LOCKING", "-x FTUNE_PROBE",
                        "-x OMP_NUM_THREADS"})
    EXPECT_NE(r.output.find(x), std::string::npos) << x << "\n" << r.output;
  EXPECT_EQ(r.output.find("-x UNRELATED_PROBE"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank=0 WARN LAZY FALSE 7 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank=1 WARN LAZY FALSE 7 1"), std::string::npos) << r.output;
}

TEST(Launch, TheExitCodeOfAFailingRankIsTheJobs) {
  double secs = 0;
  auto r = launch("-n 2 -- sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then exit 7; fi; sleep 30'", &secs);
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_LT(secs, 20) << r.output;  // the sleeping rank is ended, not waited for
  EXPECT_NE(r.output.find("[launch] the job ended with exit code 7"), std::string::npos) << r.output;
}

// Rank 1 dies (SIGKILL) inside a checkpoint, while rank 0 waits in the save's barrier: the job
// ends, non-zero, well within the collective timeouts, with a line naming the rank and host.
TEST_F(LaunchMpi, AKilledRankEndsTheJob) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_shell(std::string(kEnv) + "FTUNE_FAULT_CHECKPOINT_STEP=2 " + shell_quote(ftune_binary()) +
                     " launch -n 2 -- " + tiny_train_args(tmp_, tmp_.file("run"), 4) + " --checkpoint.every 2");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(secs, 60) << "the save phase's timeout is 1800 s: the job must end through mpirun\n" << r.output;
  EXPECT_NE(r.output.find("-x FTUNE_FAULT_CHECKPOINT_STEP"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 with PID"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exited on signal 9"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[launch] the job ended with exit code"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp_.file("run/final")));
}

// SIGUSR1 to `ftune launch` reaches every rank through mpirun: they agree at the next step,
// checkpoint and exit 85; the same command resumes, and metrics.jsonl has every step once.
TEST_F(LaunchMpi, ASignalCheckpointsAndTheSameCommandResumes) {
  const std::string out = tmp_.file("run");
  const std::string cmd = std::string(kEnv) + shell_quote(ftune_binary()) + " launch -n 2 -- " +
                          tiny_train_args(tmp_, out, 12);
  auto r = run_shell("exec 2>&1; FTUNE_TEST_STEP_SLEEP_S=0.3 " + cmd + " & pid=$!; until grep -qs '\"step\":2,' " +
                     shell_quote(out + "/metrics.jsonl") + "; do sleep 0.1; done; kill -USR1 $pid; wait $pid; "
                     "echo \"rc=$?\"");
  EXPECT_NE(r.output.find("rc=85"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[train] stopping on a signal at step"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("run the same command to resume"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/COMPLETE"));
  auto again = run_shell(cmd);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("[train] resumed from"), std::string::npos) << again.output;
  std::map<int64_t, int> count;
  auto losses = metrics_losses(out, &count);
  EXPECT_EQ(losses.size(), 12u);
  for (const auto& [step, n] : count) EXPECT_EQ(n, 1) << "step " << step;
  EXPECT_TRUE(std::filesystem::exists(out + "/COMPLETE"));
}

// SIGTERM to one rank alone (as a preemption might reach one node first): every rank agrees
// at the next step boundary, the checkpoint is complete, and the job exits 85.
TEST_F(LaunchMpi, ASigtermOnOneRankStopsEveryRank) {
  const std::string out = tmp_.file("run");
  auto r = run_shell("exec 2>&1; FTUNE_TEST_STEP_SLEEP_S=0.3 " + std::string(kEnv) + shell_quote(ftune_binary()) +
                     " launch -n 2 -- " + tiny_train_args(tmp_, out, 12) + " & pid=$!; until grep -qs '\"step\":2,' " +
                     shell_quote(out + "/metrics.jsonl") + "; do sleep 0.1; done; mpirun_pid=$(pgrep -P $pid); "
                     "rank=$(pgrep -P $mpirun_pid | tail -n 1); kill -TERM $rank; wait $pid; echo \"rc=$?\"");
  EXPECT_NE(r.output.find("rc=85"), std::string::npos) << r.output;
  const size_t got = r.output.find("[train] stop signal received");
  ASSERT_NE(got, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[train] stop signal received", got + 1), std::string::npos) << "one rank only:\n" << r.output;
  const size_t at = r.output.find("[train] stopping on a signal at step ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string step = r.output.substr(at + 37, r.output.find(';', at) - at - 37);
  char name[32];
  std::snprintf(name, sizeof name, "step-%06d", std::stoi(step));
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/" + name + "/DONE")) << name << "\n" << r.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/final"));
}

// SIGUSR2 to one rank asks for a checkpoint on request: every rank writes it at the next step
// boundary and the run goes on to the end.
TEST_F(LaunchMpi, ASigusr2WritesACheckpointAndTheRunGoesOn) {
  const std::string out = tmp_.file("run");
  auto r = run_shell("exec 2>&1; FTUNE_TEST_STEP_SLEEP_S=0.3 " + std::string(kEnv) + shell_quote(ftune_binary()) +
                     " launch -n 2 -- " + tiny_train_args(tmp_, out, 8) + " & pid=$!; until grep -qs '\"step\":2,' " +
                     shell_quote(out + "/metrics.jsonl") + "; do sleep 0.1; done; mpirun_pid=$(pgrep -P $pid); "
                     "rank=$(pgrep -P $mpirun_pid | tail -n 1); kill -USR2 $rank; wait $pid; echo \"rc=$?\"");
  EXPECT_NE(r.output.find("rc=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[train] checkpoint requested (SIGUSR2)"), std::string::npos) << r.output;
  int mid = 0;
  for (const auto& e : std::filesystem::directory_iterator(out + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name != "step-000008" && std::filesystem::exists(e.path() / "DONE")) ++mid;
  }
  EXPECT_EQ(mid, 1) << "one checkpoint on request before the final one\n" << r.output;
  EXPECT_TRUE(std::filesystem::exists(out + "/final"));
  EXPECT_TRUE(std::filesystem::exists(out + "/COMPLETE"));
}

TEST(Launch, DryRunPrintsTheCommandOnly) {
  TempDir dir;
  auto r = run_shell("env -i PATH=\"$PATH\" NCCL_DEBUG=INFO " + shell_quote(ftune_binary()) +
                     " launch --hosts a:4,b:4 --dry-run -- train --config " + shell_quote(dir.file("run.toml")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "[launch] mpirun -np 8 --host a:4,b:4 --bind-to numa -x NCCL_DEBUG " + ftune_binary() +
                          " train --config " + dir.file("run.toml") + "\n");
  r = run_shell("env -i PATH=\"$PATH\" SLURM_JOB_ID=12 " + shell_quote(ftune_binary()) +
                " launch -n 4 --ntasks-per-node 2 --dry-run -- train --steps 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "[launch] srun --mpi=pmix --export=ALL --kill-on-bad-exit=1 --ntasks=4 --ntasks-per-node=2 " +
                          ftune_binary() + " train --steps 3\n");
}

TEST(Launch, AHostfileLineThatDoesNotParseIsNamed) {
  TempDir dir;
  write_file(dir.file("hosts"), "node1 slots=8\nnode2 slots=eight\n");
  auto r = launch("--hostfile " + shell_quote(dir.file("hosts")) + " --dry-run -- train");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir.file("hosts") + ":2: cannot read 'node2 slots=eight'"), std::string::npos) << r.output;
}

TEST_F(LaunchMpi, MoreLocalRanksThanGpusIsRefused) {
  auto r = launch("-n 2 -- " + tiny_train_args(tmp_, tmp_.file("run"), 2) + " --model.device cuda");
  EXPECT_NE(r.exit_code, 0) << r.output;
  // This machine has no GPU; with fewer GPUs than ranks the line says "has 2 local ranks but 1
  // GPU(s): start one rank per GPU" (unit test Placement.OneGpuPerLocalRank...).
  EXPECT_NE(r.output.find("shows no GPU for its 2 local rank(s)"), std::string::npos) << r.output;
}

TEST_F(LaunchMpi, RanksWhoseConfigsDifferAreRefusedBeforeTraining) {
  const std::string args = tiny_train_args(tmp_, tmp_.file("run"), 2);
  const std::string bin = shell_quote(ftune_binary());
  auto r = run_shell(std::string(kEnv) + "mpirun --oversubscribe --bind-to none -np 1 " + bin + " " + args +
                     " --seed 1 : -np 1 " + bin + " " + args + " --seed 2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1 runs another config than rank 0"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[train] step 1"), std::string::npos) << r.output;
}

TEST(SlurmSubmit, SbatchMissingFromPathIsNamed) {
  TempDir dir;
  auto r = run_shell("PATH=/nonexistent " + shell_quote(ftune_binary()) +
                     " slurm submit --nodes 1 --ntasks-per-node 2 --time 10 -- train --model m --data d --out " +
                     shell_quote(dir.file("run")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("sbatch is not on PATH (/nonexistent)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--dry-run renders the script without it"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
