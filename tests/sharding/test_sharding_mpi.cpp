// The sharding engine under real mpirun ranks (CPU, float32, one torch thread per rank): several
// steps of training on 1-4 ranks must give the losses and final parameters of one process
// without the engine (relative 1e-5), in every mode, with and without activation
// checkpointing, tied and untied heads, hybrid 2 x 2 sharding, AdamW and SGD. Unit sizes are
// not divisible by 3 or 4, so slices cross tensor boundaries and end in padding.
#include <gtest/gtest.h>

#include <csignal>
#include <chrono>
#include <cctype>
#include <cmath>
#include <fstream>
#include <thread>
#include <filesystem>
#include <map>
#include <sstream>

#include "runtime/checkpoint/safetensors.h"
#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

constexpr double kRelTolerance = 1e-5;

std::map<std::string, std::vector<double>> read_all(const std::string& path) {
  auto f = st::SafetensorsFile::open(path);
  std::map<std::string, std::vector<double>> out;
  for (const auto& t : f->tensors()) {
    const double* p = reinterpret_cast<const double*>(f->data(t));
    out[t.name].assign(p, p + t.numel());
  }
  return out;
}

std::string run_ranks(int np, const std::string& out, const std::string& flags) {
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";
  if (np > 0) cmd += "mpirun --oversubscribe --bind-to none -np " + std::to_string(np) + " ";
  cmd += shell_quote(FTUNE_SHARDING_RANK) + " " + shell_quote(out) + " " + flags;
  auto r = run_shell(cmd);
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  return r.output;
}

// Every tensor of `ours` equals `ref` within kRelTolerance of the tensor's largest value.
void expect_same(const std::string& ref_path, const std::string& ours_path, const std::string& what) {
  auto ref = read_all(ref_path), ours = read_all(ours_path);
  ASSERT_EQ(ref.size(), ours.size()) << what;
  double worst = 0;
  for (const auto& [name, r] : ref) {
    auto it = ours.find(name);
    ASSERT_NE(it, ours.end()) << what << ": " << name;
    ASSERT_EQ(it->second.size(), r.size()) << what << ": " << name;
    double scale = 1, diff = 0;
    for (size_t i = 0; i < r.size(); ++i) {
      scale = std::max(scale, std::abs(r[i]));
      diff = std::max(diff, std::abs(r[i] - it->second[i]));
    }
    worst = std::max(worst, diff / scale);
    EXPECT_LE(diff / scale, kRelTolerance) << what << ": " << name;
  }
  std::printf("[sharding] %s: worst relative difference %.3g\n", what.c_str(), worst);
}

struct Case {
  std::string flags;  // besides --engine
  std::vector<int> world_sizes;
};

class ShardingMpi : public ::testing::TestWithParam<Case> {};

TEST_P(ShardingMpi, MatchesOneProcessWithoutEngine) {
  TempDir tmp;
  const Case& c = GetParam();
  run_ranks(0, tmp.file("ref.safetensors"), "--engine 0 " + c.flags);
  auto ref = read_all(tmp.file("ref.safetensors"));
  ASSERT_GT(ref.count("loss.2"), 0u);
  // The run must change the parameters, or equality would prove nothing.
  ASSERT_NE(ref["loss.0"][0], ref["loss.2"][0]);
  for (int np : c.world_sizes) {
    const std::string out = tmp.file("np" + std::to_string(np) + ".safetensors");
    run_ranks(np, out, "--engine 1 " + c.flags);
    expect_same(tmp.file("ref.safetensors"), out, c.flags + " on " + std::to_string(np) + " ranks");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, ShardingMpi,
    ::testing::Values(Case{"--mode full --ac 1", {1, 2, 3, 4}},
                      Case{"--mode full --ac 0", {2, 3, 4}},
                      Case{"--mode full --ac 1 --tied 1", {3}},
                      Case{"--mode full --ac 0 --tied 1", {4}},
                      Case{"--mode full --ac 1 --optim sgd", {3}},
                      Case{"--mode full --ac 1 --hybrid 1", {4}},
                      Case{"--mode full --ac 0 --hybrid 1 --tied 1", {4}},
                      Case{"--mode frozen_replicated --ac 1", {2, 3}},
                      Case{"--mode frozen_replicated --ac 0 --tied 1", {3}},
                      Case{"--mode frozen_sharded --ac 1", {3, 4}},
                      Case{"--mode frozen_sharded --ac 0 --tied 1", {4}}),
    [](const ::testing::TestParamInfo<Case>& info) {  // "mode_full_ac_1_tied_1"
      std::string name;
      for (char ch : info.param.flags) {
        if (std::isalnum(static_cast<unsigned char>(ch))) name += ch;
        else if (!name.empty() && name.back() != '_') name += '_';
      }
      return name;
    });

// A rank that stops, dies or throws inside a step ends the whole job: within the step timeout
// (3 s here) and with one line naming the collective and the rank, or that rank's message.
struct FaultResult {
  ProcessResult run;
  double seconds = 0;
  int leftover = 0;  // ranks alive after mpirun returned (killed by the test)
};

FaultResult run_fault(const std::string& mode, const std::string& mpirun_options = "") {
  TempDir tmp;
  const std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                          "mpirun --oversubscribe --bind-to none " + mpirun_options + " -np 3 " +
                          shell_quote(FTUNE_SHARDING_RANK) + " " + shell_quote(tmp.file("out")) +
                          " --engine 1 --steps 3 --timeout 3 --fault " + mode + " --pid-dir " +
                          shell_quote(tmp.path());
  FaultResult f;
  auto t0 = std::chrono::steady_clock::now();
  f.run = run_shell(cmd);
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (int rank = 0; rank < 3; ++rank) {
    int pid = 0;
    std::ifstream in(tmp.file("pid." + std::to_string(rank)));
    if (in >> pid && pid > 0 && process_alive(pid)) {
      ++f.leftover;
      kill(pid, SIGCONT);
      kill(pid, SIGKILL);
    }
  }
  return f;
}

TEST(ShardingFault, ARankStoppedInsideAStepIsNamedWithinTheTimeout) {
  FaultResult f = run_fault("stop");
  EXPECT_NE(f.run.exit_code, 0) << f.run.output;
  EXPECT_GT(f.seconds, 2.5) << f.run.output;
  EXPECT_LT(f.seconds, 15.0) << f.run.output;
  EXPECT_NE(f.run.output.find("[comm] timeout: all_"), std::string::npos) << f.run.output;
  // It may have entered the collective (a prefetch is issued before the unit runs) or not;
  // either way the line names it as stopped ("rank 2 (stopped, ..." or "rank 2 (last entered
  // #17, stopped, ...").
  EXPECT_NE(f.run.output.find("rank 2 ("), std::string::npos) << f.run.output;
  EXPECT_NE(f.run.output.find("stopped, active"), std::string::npos) << f.run.output;
  EXPECT_EQ(f.leftover, 0) << f.run.output;
}

TEST(ShardingFault, ARankKilledInsideAStepIsNamedWhenTheLauncherLetsOthersRun) {
  FaultResult f = run_fault("kill", "--mca orte_abort_on_non_zero_status 0");
  EXPECT_NE(f.run.exit_code, 0) << f.run.output;
  EXPECT_LT(f.seconds, 15.0) << f.run.output;
  EXPECT_NE(f.run.output.find("[comm] timeout: all_"), std::string::npos) << f.run.output;
  EXPECT_NE(f.run.output.find("rank 2 ("), std::string::npos) << f.run.output;
  EXPECT_NE(f.run.output.find("process gone, active"), std::string::npos) << f.run.output;
  EXPECT_EQ(f.leftover, 0) << f.run.output;
}

TEST(ShardingFault, AnExceptionInsideAStepEndsEveryRankWithItsMessage) {
  FaultResult f = run_fault("throw");
  EXPECT_EQ(f.run.exit_code, 1) << f.run.output;
  EXPECT_LT(f.seconds, 10.0) << f.run.output;
  EXPECT_NE(f.run.output.find("[rank 2 on "), std::string::npos) << f.run.output;
  EXPECT_NE(f.run.output.find("injected fault in layer 1 of step 1"), std::string::npos) << f.run.output;
  EXPECT_EQ(f.leftover, 0) << f.run.output;
}

struct RankStats {
  double bytes_read = 0, rss_growth = 0;
};

RankStats read_stats(const std::string& path) {
  std::istringstream in(read_file(path));
  double read = 0, before = 0, after = 0;
  in >> read >> before >> after;
  return {read, after - before};
}

// Loading reads only a rank's slices from the safetensors files and holds only its slices,
// master and AdamW moments: bytes read and resident growth are about 1/N of one process's.
TEST(ShardingLoad, EachRankReadsAndHoldsAboutOneNth) {
  TempDir tmp;
  run_ranks(0, "", "--engine 0 --big 1 --save " + shell_quote(tmp.file("hf")));
  double file_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.file("hf")))
    if (e.path().extension() == ".safetensors") file_bytes += double(e.file_size());
  const std::string flags = "--engine 1 --big 1 --load " + shell_quote(tmp.file("hf")) + " --stats ";
  run_ranks(1, tmp.file("unused"), flags + shell_quote(tmp.file("one")));
  run_ranks(4, tmp.file("unused"), flags + shell_quote(tmp.file("four")));
  RankStats one = read_stats(tmp.file("one.0"));
  EXPECT_GT(one.bytes_read, 0.99 * file_bytes);
  EXPECT_GT(one.rss_growth, 150e6);  // fp32 master + two moments of ~21 M parameters: 252 MB
  for (int r = 0; r < 4; ++r) {
    RankStats s = read_stats(tmp.file("four." + std::to_string(r)));
    std::printf("[sharding] rank %d of 4: read %.1f MB of %.1f MB, resident +%.1f MB (1 rank: +%.1f MB)\n",
                r, s.bytes_read / 1e6, file_bytes / 1e6, s.rss_growth / 1e6, one.rss_growth / 1e6);
    EXPECT_LT(s.bytes_read, 0.26 * one.bytes_read);
    EXPECT_GT(s.bytes_read, 0.24 * one.bytes_read);
    EXPECT_LT(s.rss_growth, 0.32 * one.rss_growth);
  }
}

}  // namespace
}  // namespace ftune::test
