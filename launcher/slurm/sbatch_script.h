// `ftune slurm submit`: the [slurm] section of a run config and the sbatch script rendered
// from it (template: slurm/train.sbatch.in, compiled in; --slurm.template overrides it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ftune::slurm {

struct SlurmSection {
  int64_t nodes = 1;
  int64_t gpus_per_node = 0;    // one task per GPU
  int64_t ntasks_per_node = 0;  // CPU runs: ranks per node
  int64_t cpus_per_task = 0;    // 0: Slurm's default
  std::string time;             // required: the job's time limit (minutes, or [D-]HH:MM:SS)
  std::string partition, account, qos, constraint, mem;
  std::string job_name;          // "" = ftune-<run directory name>
  int64_t signal_lead_s = 300;  // [s] before the limit: USR1 asks the ranks to checkpoint
  std::vector<std::string> env;          // NAME=value, exported in the script
  std::vector<std::string> sbatch_args;  // more #SBATCH lines ("--exclusive")
  std::vector<std::string> srun_args;    // more srun options
  std::string template_path;             // "" = the built-in slurm/train.sbatch.in

  template <class F>
  void fields(F&& f) {
    f("nodes", nodes, "nodes to allocate");
    f("gpus_per_node", gpus_per_node, "GPUs per node; one task (rank) per GPU");
    f("ntasks_per_node", ntasks_per_node, "ranks per node for CPU runs (GPU runs: gpus_per_node)");
    f("cpus_per_task", cpus_per_task, "CPUs per rank (0: Slurm's default)");
    f("time", time, "time limit: minutes, HH:MM:SS or D-HH:MM:SS (required)");
    f("partition", partition, "Slurm partition (empty: the cluster's default)");
    f("account", account, "account to charge");
    f("qos", qos, "quality of service");
    f("constraint", constraint, "node features, e.g. h100");
    f("mem", mem, "memory per node, e.g. 0 (all) or 500G");
    f("job_name", job_name, "the job's name in squeue (empty: ftune-<name of train.out>)");
    f("signal_lead_s", signal_lead_s, "seconds before the time limit when the ranks are told to "
                                      "checkpoint (SIGUSR1) and the job is requeued");
    f("env", env, "NAME=value variables exported in the batch script (e.g. NCCL_IB_HCA=mlx5)");
    f("sbatch_args", sbatch_args, "more sbatch options, one #SBATCH line each (e.g. --exclusive)");
    f("srun_args", srun_args, "more srun options (e.g. --cpu-bind=none)");
    f("template", template_path, "sbatch template to render instead of the built-in slurm/train.sbatch.in");
  }
};

// What the script needs besides the section.
struct ScriptInputs {
  std::string run_dir;  // absolute: train.out
  std::string workdir;  // absolute: where relative paths of the config resolve (submit's cwd)
  std::string ftune;    // absolute path of the ftune executable every node runs
};

// Rules that need no cluster: a time limit longer than the signal lead, nodes >= 1, one task per
// GPU, NAME=value entries, a device that matches the resources. Throws ftune::Error naming the key.
void validate(const SlurmSection& s, const std::string& model_device);

// A Slurm time limit in seconds: "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS";
// none for other text (INFINITE, or a typo sbatch will refuse with its own message).
std::optional<int64_t> time_limit_s(const std::string& time);

// The built-in template (slurm/train.sbatch.in).
const std::string& builtin_template();

// Replaces every {{name}} of `text` by vars[name]; an unknown name is an ftune::Error naming
// `source`:line.
std::string render_template(const std::string& text, const std::map<std::string, std::string>& vars,
                            const std::string& source);

// The whole script for these settings.
std::string render_script(const SlurmSection& s, const ScriptInputs& in);

}  // namespace ftune::slurm
