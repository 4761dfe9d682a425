// `ftune slurm submit` against the real Slurm cluster that tests/slurm/cluster.sh starts on
// this machine (two nodes n1, n2 of 2 CPUs; ctest fixture slurm_cluster): a 2-rank LoRA run
// with --wait, a job across both nodes, a time limit that signals, checkpoints, requeues and
// resumes to the uninterrupted run's losses, and what sbatch refuses.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/launcher/tiny_run.h"
#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

namespace fs = std::filesystem;

class Slurm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(FTUNE_SLURM_CONF)) GTEST_SKIP() << "no Slurm cluster (" << FTUNE_SLURM_CONF << "): "
                                                    << "tests/slurm/cluster.sh start did not run or was skipped";
    ASSERT_TRUE(make_tiny_run(tmp_));
  }

  // Runs `ftune slurm ARGS` with the cluster's config; `env` goes before it.
  ProcessResult slurm(const std::string& args, const std::string& env = "") {
    return run_shell(std::string("SLURM_CONF=") + FTUNE_SLURM_CONF + " OMP_NUM_THREADS=1 " + env + " " +
                     shell_quote(ftune_binary()) + " slurm " + args);
  }

  std::string job_id(const ProcessResult& r) {
    const size_t at = r.output.find("[slurm] submitted job ");
    return at == std::string::npos ? "" : r.output.substr(at + 22, r.output.find(';', at) - at - 22);
  }

  std::string scontrol(const std::string& args) {
    return run_shell(std::string("SLURM_CONF=") + FTUNE_SLURM_CONF + " scontrol " + args).output;
  }

  TempDir tmp_;
};

TEST_F(Slurm, SubmitWaitTrainsLoraOnTwoRanksAndALateRequeueDoesNothing) {
  const std::string out = tmp_.file("run");
  auto r = slurm("submit --nodes 1 --ntasks-per-node 2 --time 5 --signal-lead-s 60 --wait -- " +
                 tiny_train_args(tmp_, out, 4));
  ASSERT_EQ(r.exit_code, 0) << r.output << read_file(out + "/slurm/job-" + job_id(r) + ".out");
  const std::string id = job_id(r);
  EXPECT_NE(r.output.find("[slurm] job " + id + " ended with exit code 0"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(out + "/final/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/slurm/job.sbatch"));
  EXPECT_TRUE(fs::exists(out + "/slurm/train.toml"));
  EXPECT_EQ(read_file(out + "/COMPLETE"), "step 4\n");
  auto st = slurm("status --run " + shell_quote(out));
  EXPECT_EQ(st.exit_code, 0) << st.output;
  EXPECT_NE(st.output.find("job " + id + " submitted"), std::string::npos) << st.output;
  EXPECT_NE(st.output.find("COMPLETED, restarts 0, exit code 0:0"), std::string::npos) << st.output;
  EXPECT_NE(st.output.find("complete: yes (step 4)"), std::string::npos) << st.output;
  auto logs = slurm("logs --run " + shell_quote(out));
  EXPECT_NE(logs.output.find("[comm] placement: 2 rank(s) on 1 node(s)"), std::string::npos) << logs.output;
  EXPECT_NE(logs.output.find("[train] wrote " + out + "/final"), std::string::npos) << logs.output;

  // A requeue after the end (a late signal, a node failure at the very end) trains nothing.
  const std::string metrics = read_file(out + "/metrics.jsonl");
  scontrol("requeue " + id);
  std::string info;
  for (int i = 0; i < 120; ++i) {
    info = scontrol("show job -o " + id);
    if (info.find("Restarts=1") != std::string::npos && info.find("JobState=COMPLETED") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_NE(info.find("JobState=COMPLETED"), std::string::npos) << info;
  EXPECT_NE(read_file(out + "/slurm/job-" + id + ".out").find(" is complete (step 4); nothing to do"), std::string::npos);
  EXPECT_EQ(read_file(out + "/metrics.jsonl"), metrics);
}

TEST_F(Slurm, TwoNodesOneRankEachTrainLoraAndThePlacementShowsBoth) {
  const std::string out = tmp_.file("run");
  // Shared memory between the fake nodes of one host crashes Open MPI: TCP only.
  auto r = slurm("submit --nodes 2 --ntasks-per-node 1 --time 5 --signal-lead-s 60 --env OMPI_MCA_btl=self,tcp "
                 "--wait -- " + tiny_train_args(tmp_, out, 4));
  const std::string log = read_file(out + "/slurm/job-" + job_id(r) + ".out");
  ASSERT_EQ(r.exit_code, 0) << r.output << log;
  const size_t table = log.find("[comm] placement: 2 rank(s) on 2 node(s)");
  ASSERT_NE(table, std::string::npos) << log;
  EXPECT_NE(log.find("\n     0  n1    0/1", table), std::string::npos) << log;
  EXPECT_NE(log.find("\n     1  n2    0/1", table), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(out + "/final/adapter_model.safetensors"));
}

// A 1-minute limit with the signal 59 s before it: Slurm sends USR1 at its first limit check
// (every 30 s), the ranks checkpoint and exit 85, the job requeues itself and resumes, as many
// times as it takes. Each step sleeps 1 s (FTUNE_TEST_STEP_SLEEP_S) so that the first run
// outlasts a check. The metrics have every step once, and the losses are the uninterrupted run's.
TEST_F(Slurm, ATimeLimitCheckpointsRequeuesAndResumesToTheSameLosses) {
  const int steps = 32;
  const std::string ref = tmp_.file("ref"), out = tmp_.file("run");
  auto u = run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun "
                     "--oversubscribe --bind-to none -np 2 " + shell_quote(ftune_binary()) + " " +
                     tiny_train_args(tmp_, ref, steps));
  ASSERT_EQ(u.exit_code, 0) << u.output;
  auto t0 = std::chrono::steady_clock::now();
  auto r = slurm("submit --nodes 1 --ntasks-per-node 2 --time 1 --signal-lead-s 59 --wait -- " +
                     tiny_train_args(tmp_, out, steps),
                 "FTUNE_TEST_STEP_SLEEP_S=1");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log = read_file(out + "/slurm/job-" + job_id(r) + ".out");
  ASSERT_EQ(r.exit_code, 0) << r.output << log;
  std::printf("[slurm] %d steps of 1 s in %.0f s of wall time, with the requeues:\n", steps, secs);
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("[slurm]", 0) == 0 || line.find("resumed from") != std::string::npos ||
        line.find("stopping on a signal") != std::string::npos)
      std::printf("  %s\n", line.c_str());
  EXPECT_NE(log.find("[slurm] SIGUSR1 at"), std::string::npos) << log;
  EXPECT_NE(log.find("[train] stopping on a signal at step"), std::string::npos) << log;
  EXPECT_NE(log.find("requeueing job"), std::string::npos) << log;
  EXPECT_NE(log.find("(restart 1)"), std::string::npos) << log;
  EXPECT_NE(log.find("[train] resumed from"), std::string::npos) << log;
  std::map<int64_t, int> count;
  auto got = metrics_losses(out, &count);
  auto want = metrics_losses(ref);
  ASSERT_EQ(want.size(), size_t(steps));
  for (int64_t step = 1; step <= steps; ++step) {
    EXPECT_EQ(count[step], 1) << "step " << step << " logged " << count[step] << " times";
    ASSERT_TRUE(got.count(step)) << "step " << step;
    EXPECT_NEAR(got[step], want[step], 1e-5 * std::abs(want[step])) << "step " << step;
  }
  EXPECT_TRUE(fs::exists(out + "/final/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/COMPLETE"));
}

TEST_F(Slurm, WhatSbatchRefusesIsShownWithItsMessage) {
  const std::string args = " --signal-lead-s 30 --wait -- " + tiny_train_args(tmp_, tmp_.file("run"), 2);
  auto r = slurm("submit --nodes 1 --ntasks-per-node 1 --time 5 --partition nosuch" + args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("sbatch refused the job"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sbatch: error: invalid partition specified: nosuch"), std::string::npos) << r.output;
  r = slurm("submit --nodes 1 --ntasks-per-node 1 --time 60" + args);  // the partition's MaxTime is 30
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("sbatch: error: Batch job submission failed: Requested time limit is invalid"),
            std::string::npos) << r.output;
  r = slurm("submit --nodes 1 --ntasks-per-node 1 --time soon" + args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("sbatch: error: Invalid --time specification"), std::string::npos) << r.output;
  r = slurm("submit --nodes 3 --ntasks-per-node 1 --time 5" + args);  // the cluster has 2 nodes
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("sbatch: error:"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
