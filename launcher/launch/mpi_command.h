// `ftune launch`: the mpirun (or, inside a Slurm allocation, srun) command line for a job of
// one rank per GPU (or --ntasks-per-node ranks per node on CPU). Pure functions of the options
// and the environment, so that tests compare the commands without running them.
#pragma once

#include <string>
#include <vector>

namespace ftune::launch {

struct Host {
  std::string name;
  int slots = 1;  // [ranks on this host]
};

struct LaunchOptions {
  int np = 0;                   // [ranks]; 0 = the hosts' slots (or ntasks_per_node x nodes)
  std::string hosts;            // "a:8,b:8"
  std::string hostfile;         // Open MPI style: "a slots=8", "a:8" or "a" per line
  int ntasks_per_node = 0;      // [ranks per node]; 0 = the hosts' slots
  std::string launcher = "auto";  // auto (srun inside a Slurm allocation, else mpirun) | mpirun | srun
  std::string bind_to = "numa";   // mpirun --bind-to: none | numa | socket | core
  std::vector<std::string> mpi_args;  // passed to mpirun/srun as given
  std::vector<std::string> command;   // after `--`: an ftune subcommand (train ...) or a program
};

// "a:8,b:8" (a host without :N gets one slot). Throws ftune::Error naming the bad entry.
std::vector<Host> parse_hosts(const std::string& spec);

// One host per line ("a", "a:8", "a slots=8", Open MPI's max_slots= ignored), '#' comments.
// Throws ftune::Error with file:line and the accepted forms.
std::vector<Host> parse_hostfile_text(const std::string& text, const std::string& file);
std::vector<Host> parse_hostfile(const std::string& path);

// The names of the variables to forward from `environ` (NAME=value entries): NCCL_*, CUDA_*,
// OMP_NUM_THREADS, HDF5_*, FTUNE_*, in the order given.
std::vector<std::string> forwarded_env(const std::vector<std::string>& environ);

// Which launcher runs the job: "srun" inside an allocation (SLURM_JOB_ID set) unless the
// options say otherwise, else "mpirun".
std::string choose_launcher(const LaunchOptions& opts, bool in_slurm_allocation);

// The whole command: launcher, its options, then `program` (the ftune executable when the
// command is an ftune subcommand, else the command's first word) and the rest of the command.
// Throws ftune::Error when the ranks do not fit the hosts or no command was given.
std::vector<std::string> build_command(const LaunchOptions& opts, const std::string& launcher,
                                       const std::vector<std::string>& environ,
                                       const std::string& ftune_exe, bool command_is_ftune);

// argv as one line a shell reads back the same (quoted where needed).
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace ftune::launch
