#include "launcher/slurm/sbatch_script.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "launcher/launch/mpi_command.h"
#include "runtime/train/preemption.h"

namespace ftune::slurm {

extern const char* const kBuiltinTemplate;  // slurm/train.sbatch.in (generated .cpp)

namespace {

std::string quoted(const std::string& s) { return launch::shell_join({s}); }

void require_plain_path(const std::string& key, const std::string& path) {
  if (path.find_first_of(" \t\n'\"\\$`") != std::string::npos)
    throw Error(key + " = '" + path + "': #SBATCH lines cannot hold spaces or quotes; choose a path without");
}

std::string resource_lines(const SlurmSection& s) {
  std::string out;
  auto line = [&](const std::string& option, const std::string& value) {
    if (!value.empty()) out += (out.empty() ? "" : "\n") + std::string("#SBATCH --") + option + "=" + value;
  };
  if (s.gpus_per_node > 0) line("gpus-per-node", std::to_string(s.gpus_per_node));
  if (s.cpus_per_task > 0) line("cpus-per-task", std::to_string(s.cpus_per_task));
  line("partition", s.partition);
  line("account", s.account);
  line("qos", s.qos);
  line("constraint", s.constraint);
  line("mem", s.mem);
  for (const auto& a : s.sbatch_args) out += (out.empty() ? "" : "\n") + std::string("#SBATCH ") + a;
  return out;
}

std::string env_lines(const SlurmSection& s) {
  std::string out;
  for (const auto& kv : s.env) {
    const size_t eq = kv.find('=');
    out += (out.empty() ? "" : "\n") + std::string("export ") + kv.substr(0, eq) + "=" + quoted(kv.substr(eq + 1));
  }
  return out;
}

std::string read_template(const std::string& path) {
  if (path.empty()) return builtin_template();
  std::ifstream in(path);
  if (!in) throw Error("slurm.template = " + path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Non-negative decimal numbers separated by ':', or none.
std::optional<std::vector<int64_t>> numbers(const std::string& text) {
  std::vector<int64_t> out;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ':');) {
    if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    out.push_back(std::stoll(part));
  }
  if (out.empty() || text.back() == ':') return std::nullopt;
  return out;
}

}  // namespace

std::optional<int64_t> time_limit_s(const std::string& time) {
  const size_t dash = time.find('-');
  auto parts = numbers(dash == std::string::npos ? time : time.substr(dash + 1));
  if (!parts || parts->size() > 3) return std::nullopt;
  const auto& p = *parts;
  if (dash != std::string::npos) {  // D-HH[:MM[:SS]]
    auto days = numbers(time.substr(0, dash));
    if (!days || days->size() != 1) return std::nullopt;
    const int64_t mm = p.size() > 1 ? p[1] : 0, ss = p.size() > 2 ? p[2] : 0;
    return (*days)[0] * 86400 + p[0] * 3600 + mm * 60 + ss;
  }
  if (p.size() == 1) return p[0] * 60;                           // MM
  if (p.size() == 2) return p[0] * 60 + p[1];                    // MM:SS
  return p[0] * 3600 + p[1] * 60 + p[2];                         // HH:MM:SS
}

void validate(const SlurmSection& s, const std::string& model_device) {
  if (s.time.empty())
    throw Error("slurm.time is required: the job's time limit, e.g. --time 04:00:00 (the run "
                "checkpoints slurm.signal_lead_s before it and is requeued)");
  if (s.nodes < 1) throw Error("slurm.nodes = " + std::to_string(s.nodes) + ": give 1 or more");
  if (s.gpus_per_node <= 0 && s.ntasks_per_node <= 0)
    throw Error("give slurm.gpus_per_node (one rank per GPU) or, for a CPU run, slurm.ntasks_per_node");
  if (s.gpus_per_node > 0 && s.ntasks_per_node > 0 && s.ntasks_per_node != s.gpus_per_node)
    throw Error("slurm.ntasks_per_node = " + std::to_string(s.ntasks_per_node) + " with slurm.gpus_per_node = " +
                std::to_string(s.gpus_per_node) + ": ftune runs one rank per GPU; drop ntasks_per_node");
  const bool cuda = model_device.rfind("cuda", 0) == 0;
  if (cuda && s.gpus_per_node <= 0)
    throw Error("model.device = " + model_device + " but no slurm.gpus_per_node: give --gpus-per-node G");
  if (!cuda && s.gpus_per_node > 0)
    throw Error("slurm.gpus_per_node = " + std::to_string(s.gpus_per_node) + " but model.device = " +
                model_device + ": set --model.device cuda, or use --ntasks-per-node for a CPU run");
  if (s.signal_lead_s < 0) throw Error("slurm.signal_lead_s must be 0 or more");
  // A lead as long as the limit signals every run at once: a requeue after each few steps.
  if (auto limit = time_limit_s(s.time); limit && s.signal_lead_s >= *limit)
    throw Error("slurm.signal_lead_s = " + std::to_string(s.signal_lead_s) + " is not shorter than slurm.time = " +
                s.time + " (" + std::to_string(*limit) + " s): every run would be told to stop at once; lower "
                "signal_lead_s (e.g. --signal-lead-s " + std::to_string(*limit / 10) + ") or raise the time limit");
  for (const auto& kv : s.env) {
    const size_t eq = kv.find('=');
    if (eq == 0 || eq == std::string::npos || kv.substr(0, eq).find_first_not_of(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
      throw Error("slurm.env entry '" + kv + "': give NAME=value");
  }
}

const std::string& builtin_template() {
  static const std::string text = kBuiltinTemplate;
  return text;
}

std::string render_template(const std::string& text, const std::map<std::string, std::string>& vars,
                            const std::string& source) {
  std::istringstream in(text);
  std::string out;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    std::string rendered;
    size_t pos = 0;
    bool only_placeholder = false;
    for (size_t open; (open = line.find("{{", pos)) != std::string::npos;) {
      const size_t close = line.find("}}", open);
      if (close == std::string::npos) throw Error(source + ":" + std::to_string(n) + ": '{{' without '}}'");
      const std::string name = line.substr(open + 2, close - open - 2);
      auto it = vars.find(name);
      if (it == vars.end()) throw Error(source + ":" + std::to_string(n) + ": unknown placeholder {{" + name + "}}");
      only_placeholder = open == 0 && close + 2 == line.size();
      rendered += line.substr(pos, open - pos) + it->second;
      pos = close + 2;
    }
    rendered += line.substr(pos);
    if (only_placeholder && rendered.empty()) continue;  // an empty list: no blank line
    out += rendered + "\n";
  }
  return out;
}

std::string render_script(const SlurmSection& s, const ScriptInputs& in) {
  require_plain_path("train.out", in.run_dir);
  require_plain_path("the working directory", in.workdir);
  std::string srun;
  for (const auto& a : s.srun_args) srun += " " + quoted(a);
  const int64_t tasks = s.gpus_per_node > 0 ? s.gpus_per_node : s.ntasks_per_node;
  const std::map<std::string, std::string> vars = {
      {"job_name", s.job_name.empty() ? "ftune-" + std::filesystem::path(in.run_dir).filename().string() : s.job_name}, {"nodes", std::to_string(s.nodes)},
      {"ntasks_per_node", std::to_string(tasks)}, {"resource_lines", resource_lines(s)},
      {"time", s.time}, {"signal_lead_s", std::to_string(s.signal_lead_s)},
      {"workdir", in.workdir}, {"run_dir", in.run_dir}, {"ftune", quoted(in.ftune)},
      {"complete_file", train::kCompleteFile}, {"env_lines", env_lines(s)},
      {"requeue_code", std::to_string(train::kExitRequeue)}, {"srun_args", srun}};
  return render_template(read_template(s.template_path), vars,
                         s.template_path.empty() ? "slurm/train.sbatch.in" : s.template_path);
}

}  // namespace ftune::slurm
