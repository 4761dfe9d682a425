// `ftune launch` and `ftune slurm submit` without running anything: host lists and hostfiles,
// the mpirun/srun command, GPU binding and the placement table, the sbatch template, and the
// golden scripts of the example configs (tests/launcher/golden/; FTUNE_UPDATE_GOLDEN=1 rewrites).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "common/error.h"
#include "launcher/launch/mpi_command.h"
#include "launcher/slurm/sbatch_script.h"
#include "runtime/comm/placement.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

using launch::Host;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LaunchHosts, ListsAndHostfileForms) {
  auto hosts = launch::parse_hosts("a:8,b:8,c");
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[1].name, "b");
  EXPECT_EQ(hosts[1].slots, 8);
  EXPECT_EQ(hosts[2].slots, 1);
  hosts = launch::parse_hostfile_text("# nodes\nn1 slots=4\n\nn2:2  # two\nn3 slots=2 max_slots=8\nn4\n", "h.txt");
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_EQ(hosts[0].slots, 4);
  EXPECT_EQ(hosts[1].slots, 2);
  EXPECT_EQ(hosts[2].slots, 2);
  EXPECT_EQ(hosts[3].slots, 1);
}

TEST(LaunchHosts, ALineThatDoesNotParseIsNamedByFileAndLine) {
  EXPECT_NE(error_of([] { launch::parse_hostfile_text("n1 slots=4\nn2 slots=four\n", "hosts.txt"); })
                .find("hosts.txt:2: cannot read 'n2 slots=four'; a hostfile line is `host`, `host:8` or `host slots=8`"),
            std::string::npos);
  EXPECT_NE(error_of([] { launch::parse_hostfile_text("n1 cpus=4\n", "h"); }).find("h:1: cannot read"),
            std::string::npos);
  EXPECT_NE(error_of([] { launch::parse_hosts("a:8,b:x"); }).find("cannot read 'b:x'"), std::string::npos);
  EXPECT_NE(error_of([] { launch::parse_hosts("a:0"); }).find("cannot read 'a:0'"), std::string::npos);
  EXPECT_NE(error_of([] { launch::parse_hostfile("/nonexistent/hosts"); }).find("cannot read the file"),
            std::string::npos);
}

TEST(LaunchCommand, MpirunWithHostsForwardsTheVariables) {
  launch::LaunchOptions o;
  o.hosts = "a:8,b:8";
  o.command = {"train", "--config", "run.toml"};
  const std::vector<std::string> env = {"PATH=/bin", "NCCL_DEBUG=INFO", "CUDA_VISIBLE_DEVICES=0,1",
                                        "OMP_NUM_THREADS=4", "HDF5_USE_FILE_LOCKING=FALSE",
                                        "FTUNE_COMM_MPI=1", "HOME=/root", "OMP_PROC_BIND=true"};
  auto argv = launch::build_command(o, "mpirun", env, "/opt/ftune", true);
  EXPECT_EQ(launch::shell_join(argv),
            "mpirun -np 16 --host a:8,b:8 --bind-to numa -x NCCL_DEBUG -x CUDA_VISIBLE_DEVICES "
            "-x OMP_NUM_THREADS -x HDF5_USE_FILE_LOCKING -x FTUNE_COMM_MPI /opt/ftune train --config run.toml");
  o.np = 17;
  EXPECT_NE(error_of([&] { launch::build_command(o, "mpirun", env, "f", true); })
                .find("-n 17 ranks do not fit the 2 host(s), which give 16 slot(s)"),
            std::string::npos);
}

TEST(LaunchCommand, CpuRanksPerNodeAndOneMachine) {
  launch::LaunchOptions o;
  o.hosts = "a,b";
  o.ntasks_per_node = 3;
  o.command = {"train"};
  EXPECT_EQ(launch::shell_join(launch::build_command(o, "mpirun", {}, "f", true)),
            "mpirun -np 6 --host a:1,b:1 --map-by ppr:3:node --bind-to numa f train");
  launch::LaunchOptions local;
  local.np = 2;
  local.command = {"sh", "-c", "echo $OMPI_COMM_WORLD_RANK"};
  EXPECT_EQ(launch::shell_join(launch::build_command(local, "mpirun", {}, "f", false)),
            "mpirun -np 2 --oversubscribe --bind-to numa sh -c 'echo $OMPI_COMM_WORLD_RANK'");
  local.np = 0;
  EXPECT_NE(error_of([&] { launch::build_command(local, "mpirun", {}, "f", false); }).find("how many ranks?"),
            std::string::npos);
  local.np = 2;
  local.command.clear();
  EXPECT_NE(error_of([&] { launch::build_command(local, "mpirun", {}, "f", false); }).find("no command"),
            std::string::npos);
}

TEST(LaunchCommand, InsideASlurmAllocationSrunPlacesTheRanks) {
  launch::LaunchOptions o;
  o.np = 16;
  o.ntasks_per_node = 8;
  o.command = {"train"};
  EXPECT_EQ(launch::choose_launcher(o, true), "srun");
  EXPECT_EQ(launch::choose_launcher(o, false), "mpirun");
  EXPECT_EQ(launch::shell_join(launch::build_command(o, "srun", {}, "/opt/ftune", true)),
            "srun --mpi=pmix --export=ALL --kill-on-bad-exit=1 --ntasks=16 --ntasks-per-node=8 /opt/ftune train");
  o.hosts = "a:8";
  EXPECT_NE(error_of([&] { launch::build_command(o, "srun", {}, "f", true); }).find("do not apply inside a Slurm allocation"),
            std::string::npos);
  o.launcher = "pbs";
  EXPECT_NE(error_of([&] { launch::choose_launcher(o, false); }).find("give auto, mpirun or srun"), std::string::npos);
}

comm::World world(int rank, int local_rank, int local_size) {
  comm::World w;
  w.rank = rank;
  w.size = 8;
  w.local_rank = local_rank;
  w.local_size = local_size;
  w.host = "gpu7";
  return w;
}

TEST(Placement, OneGpuPerLocalRankThroughCudaVisibleDevices) {
  auto b = comm::bind_gpu(world(5, 1, 4), 4, "4,5,6,7");
  EXPECT_EQ(b.device, 1);
  EXPECT_EQ(b.name, "5");
  EXPECT_EQ(comm::bind_gpu(world(2, 2, 4), 8, nullptr).name, "2");
  EXPECT_NE(error_of([] { comm::bind_gpu(world(5, 1, 4), 2, "0,1"); })
                .find("gpu7 has 4 local ranks but 2 GPU(s) (CUDA_VISIBLE_DEVICES=0,1): start one rank per GPU"),
            std::string::npos);
  EXPECT_NE(error_of([] { comm::bind_gpu(world(0, 0, 2), 0, nullptr); }).find("gpu7 shows no GPU for its 2 local rank(s): run on GPU nodes, or set model.device = cpu"),
            std::string::npos);
}

TEST(Placement, TableAndDistinctGpus) {
  std::vector<comm::PlacementRow> rows = {{0, 0, 2, 0, 0, "a", "0"}, {1, 1, 2, 0, 1, "a", "1"},
                                          {2, 0, 1, 1, -1, "bb", "0"}};
  EXPECT_EQ(comm::placement_table(rows),
            "[comm] placement: 3 rank(s) on 2 node(s)\n"
            "  rank  host  local  gpu   numa\n"
            "     0  a     0/2    0     0\n"
            "     1  a     1/2    1     1\n"
            "     2  bb    0/1    0     -\n");
  comm::check_distinct_gpus(rows);
  rows[1].gpu = "0";
  EXPECT_NE(error_of([&] { comm::check_distinct_gpus(rows); }).find("ranks 0 and 1 on a both bound GPU 0"),
            std::string::npos);
}

TEST(SbatchTemplate, TimeLimitsInSlurmsForms) {
  EXPECT_EQ(slurm::time_limit_s("90"), 5400);
  EXPECT_EQ(slurm::time_limit_s("1:30"), 90);
  EXPECT_EQ(slurm::time_limit_s("24:00:00"), 86400);
  EXPECT_EQ(slurm::time_limit_s("2-12"), 2 * 86400 + 12 * 3600);
  EXPECT_EQ(slurm::time_limit_s("1-00:30"), 86400 + 1800);
  EXPECT_EQ(slurm::time_limit_s("1-00:00:05"), 86405);
  for (const char* bad : {"", "soon", "INFINITE", "1:2:3:4", "1:", "-5", "1-", "x-1"})
    EXPECT_FALSE(slurm::time_limit_s(bad).has_value()) << bad;
}

TEST(SbatchTemplate, PlaceholdersAndRules) {
  EXPECT_EQ(slurm::render_template("a {{x}} b\n{{empty}}\nc{{x}}\n", {{"x", "1"}, {"empty", ""}}, "t"), "a 1 b\nc1\n");
  EXPECT_NE(error_of([] { slurm::render_template("ok\n#SBATCH --x={{nope}}\n", {}, "my.sbatch"); })
                .find("my.sbatch:2: unknown placeholder {{nope}}"),
            std::string::npos);
  slurm::SlurmSection s;
  s.ntasks_per_node = 2;
  EXPECT_NE(error_of([&] { slurm::validate(s, "cpu"); }).find("slurm.time is required"), std::string::npos);
  s.time = "5";
  EXPECT_NE(error_of([&] { slurm::validate(s, "cpu"); })
                .find("slurm.signal_lead_s = 300 is not shorter than slurm.time = 5 (300 s)"),
            std::string::npos);
  s.time = "10";
  slurm::validate(s, "cpu");
  EXPECT_NE(error_of([&] { slurm::validate(s, "cuda"); }).find("no slurm.gpus_per_node"), std::string::npos);
  s.gpus_per_node = 8;
  EXPECT_NE(error_of([&] { slurm::validate(s, "cuda"); }).find("one rank per GPU"), std::string::npos);
  s.ntasks_per_node = 0;
  EXPECT_NE(error_of([&] { slurm::validate(s, "cpu"); }).find("set --model.device cuda"), std::string::npos);
  s.env = {"NCCL_DEBUG"};
  EXPECT_NE(error_of([&] { slurm::validate(s, "cuda"); }).find("slurm.env entry 'NCCL_DEBUG': give NAME=value"),
            std::string::npos);
  EXPECT_NE(error_of([&] { slurm::render_script(s, {"/runs/my run", "/w", "/f"}); }).find("cannot hold spaces"),
            std::string::npos);
}

// The rendered script of an example config, with this checkout's paths replaced by @SRC@ and
// the binary's by @FTUNE@ so that the golden file holds anywhere.
std::string rendered(const std::string& config) {
  auto r = test::run_shell("cd " + test::shell_quote(test::source_dir()) + " && " +
                           test::shell_quote(test::ftune_binary()) + " slurm submit --config configs/" + config +
                           ".toml --dry-run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto replace_all = [](std::string s, const std::string& from, const std::string& to) {
    for (size_t at; (at = s.find(from)) != std::string::npos;) s.replace(at, from.size(), to);
    return s;
  };
  std::string out = replace_all(r.output, test::ftune_binary(), "@FTUNE@");
  return replace_all(out, test::source_dir(), "@SRC@");
}

TEST(SbatchGolden, TheExampleConfigsRenderTheirScripts) {
  for (const char* config : {"llama-3-70b-full", "llama-3.1-8b-lora"}) {
    const std::string golden = test::source_dir() + "/tests/launcher/golden/" + config + ".sbatch";
    const std::string got = rendered(config);
    if (std::getenv("FTUNE_UPDATE_GOLDEN") != nullptr) test::write_file(golden, got);
    EXPECT_EQ(got, test::read_file(golden)) << config << ": rerun with FTUNE_UPDATE_GOLDEN=1 if the change is meant";
  }
}

}  // namespace
}  // namespace ftune
