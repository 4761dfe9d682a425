// `ftune launch -n N [--hosts a:8,b:8 | --hostfile F] [--dry-run] -- train ...`: starts the job
// with the right mpirun (srun inside a Slurm allocation), one rank per GPU, prints the command,
// forwards signals and returns the job's exit code.
#include <cstdlib>
#include <iostream>
#include <memory>

#include "launcher/commands.h"
#include "launcher/launch/mpi_command.h"
#include "launcher/launch/process.h"
#include "runtime/train/preemption.h"

namespace ftune {

void register_launch_command(CLI::App& root, cli::CommandSet& commands) {
  auto opts = std::make_shared<launch::LaunchOptions>();
  auto dry_run = std::make_shared<bool>(false);
  cli::Command& cmd = commands.add(&root, "launch", "start a job on this machine or a few: mpirun (srun inside "
                                                     "a Slurm allocation), one rank per GPU");
  CLI::App* app = cmd.app;
  app->add_option("-n,--np", opts->np, "ranks in all (default: the hosts' slots)");
  app->add_option("--hosts", opts->hosts, "hosts and their slots (ranks), e.g. a:8,b:8");
  app->add_option("--hostfile", opts->hostfile, "Open MPI hostfile: `host slots=N` (or host:N) per line");
  app->add_option("--ntasks-per-node", opts->ntasks_per_node, "ranks per node (CPU runs; GPU runs: one per GPU)");
  app->add_option("--launcher", opts->launcher, "auto (srun inside a Slurm allocation, else mpirun), mpirun or srun")
      ->capture_default_str();
  app->add_option("--bind-to", opts->bind_to, "mpirun's --bind-to: none, numa, socket or core")->capture_default_str();
  app->add_option("--mpi-arg", opts->mpi_args, "one more argument for mpirun/srun (repeat for several)")
      ->allow_extra_args(false);
  app->add_flag("--dry-run", *dry_run, "print the command and exit without running it");
  app->add_option("command", opts->command, "after --: an ftune subcommand (train ...) or a program")
      ->required();
  CLI::App* top = &root;
  cmd.run = [opts, dry_run, top] {
    bool is_ftune = false;
    for (const CLI::App* sub : top->get_subcommands({})) is_ftune |= sub->get_name() == opts->command.front();
    const std::string launcher = launch::choose_launcher(*opts, std::getenv("SLURM_JOB_ID") != nullptr);
    const auto argv = launch::build_command(*opts, launcher, launch::current_environ(),
                                            launch::self_executable(), is_ftune);
    std::cout << "[launch] " << launch::shell_join(argv) << std::endl;
    if (*dry_run) return 0;
    const int rc = launch::run_forwarding_signals(argv);
    if (rc == train::kExitRequeue)
      std::cerr << "[launch] the ranks checkpointed on a signal (exit code " << rc << "); run the same "
                   "command to resume\n";
    else if (rc != 0)
      std::cerr << "[launch] the job ended with exit code " << rc << " (" << launcher << ")\n";
    return rc;
  };
}

}  // namespace ftune
