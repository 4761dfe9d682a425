// `ftune slurm submit | status | logs`: Slurm batch jobs of `ftune train`. submit renders the
// sbatch script (slurm/train.sbatch.in) from the [slurm] section and the run's config, saves
// both in RUN/slurm/, submits with the cluster's sbatch and prints the job id; --wait returns
// the job's exit code after any requeues. status and logs read the run's jobs back.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <toml++/toml.h>

#include "common/error.h"
#include "launcher/commands.h"
#include "launcher/launch/process.h"
#include "launcher/slurm/jobs.h"
#include "launcher/slurm/sbatch_script.h"

namespace ftune {
namespace {

namespace fs = std::filesystem;

struct SubmitState {
  train::TrainConfig train;
  slurm::SlurmSection slurm;
  bool wait = false, dry_run = false;
  std::vector<std::string> command;  // after --: train ...
};

// The resolved config of a `train ARGS` command, parsed by a command tree of its own.
std::string resolve_train_command(const std::vector<std::string>& command) {
  if (command.front() != "train")
    throw Error("ftune slurm submit: after -- give the ranks' command, `train ...` (got '" + command.front() + "')");
  CLI::App app{"ftune", "ftune"};
  cli::CommandSet commands;
  build_cli(app, commands);
  std::vector<std::string> args(command.rbegin(), command.rend());  // CLI11 takes them reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    throw Error("ftune slurm submit: the command after -- does not parse: " + std::string(e.what()));
  }
  for (const auto& c : commands.all())
    if (c->app->get_name() == "train" && c->app->parsed()) return c->sections.dump_toml();
  throw Error("ftune slurm submit: after -- give `train ...`");
}

// True when a train flag (not --slurm.*) was given on the command line or in --config.
bool train_flags_given(const CLI::App* app) {
  for (const CLI::Option* opt : app->get_options()) {
    const std::string name = opt->get_name();
    if (opt->count() > 0 && name.find('.') != std::string::npos && name.rfind("--slurm.", 0) != 0) return true;
  }
  return false;
}

// The dump without its [name] block: the ranks do not need [slurm].
std::string strip_section(const std::string& dump, const std::string& name) {
  const std::string head = "[" + name + "]\n";
  const size_t at = dump.rfind("\n" + head);
  const size_t begin = dump.rfind(head, 0) == 0 ? 0 : (at == std::string::npos ? at : at + 1);
  if (begin == std::string::npos) return dump;
  const size_t end = dump.find("\n[", begin + head.size());
  return dump.substr(0, begin) + (end == std::string::npos ? "" : dump.substr(end + 1));
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw Error("cannot write " + path);
  out.close();
  chmod(path.c_str(), mode);
}

int run_submit(SubmitState& st, const CLI::App* app, const cli::SectionList& sections) {
  std::string toml_text;
  if (!st.command.empty()) {
    if (train_flags_given(app))
      throw Error("ftune slurm submit: give the training config either as flags and --config sections "
                  "or after `-- train`, not both");
    toml_text = resolve_train_command(st.command);
  } else {
    toml_text = sections.dump_toml();
  }
  toml_text = strip_section(toml_text, "slurm");
  const toml::table t = toml::parse(toml_text);
  const std::string out = t["train"]["out"].value_or(std::string("runs/train"));
  slurm::validate(st.slurm, t["model"]["device"].value_or(std::string("cpu")));
  const std::string run = fs::absolute(out).lexically_normal().string();
  const std::string script = slurm::render_script(st.slurm, {run, fs::current_path().string(), launch::self_executable()});
  const std::string script_path = run + "/slurm/job.sbatch";
  if (st.dry_run) {
    std::cout << script << "[slurm] dry run: would write " << run << "/slurm/train.toml and " << script_path
              << ", then run: sbatch --parsable " << (st.wait ? "--wait " : "") << script_path << "\n";
    return 0;
  }
  fs::create_directories(run + "/slurm");
  write_file(run + "/slurm/train.toml", toml_text, 0644);
  write_file(script_path, script, 0755);
  return slurm::submit(run, script_path, st.wait);
}

void register_submit(CLI::App* group, cli::CommandSet& commands) {
  auto st = std::make_shared<SubmitState>();
  cli::Command& cmd = commands.add(group, "submit", "submit `ftune train` as a Slurm batch job (rendered "
                                                     "sbatch script, requeued on time limits)");
  add_train_sections(cmd, &st->train);
  cli::add_section(cmd.app, cmd.sections, "slurm", st->slurm, cli::ShortFlags::yes);
  cmd.app->add_flag("--wait", st->wait, "block until the job ends (after any requeues); exit with its code");
  cmd.app->add_flag("--dry-run", st->dry_run, "print the script and the sbatch command; write and submit nothing");
  cmd.app->add_option("command", st->command, "after --: train ... (instead of the training flags here)");
  const CLI::App* app = cmd.app;
  const cli::SectionList* sections = &cmd.sections;
  cmd.run = [st, app, sections] { return run_submit(*st, app, *sections); };
}

void register_status(CLI::App* group, cli::CommandSet& commands) {
  auto run = std::make_shared<std::string>();
  cli::Command& cmd = commands.add(group, "status", "the Slurm jobs of a run, its latest checkpoint and completion");
  cmd.app->add_option("--run", *run, "run directory (train.out of the submitted config)")->required();
  cmd.run = [run] {
    std::cout << slurm::run_status(fs::absolute(*run).lexically_normal().string());
    return 0;
  };
}

void register_logs(CLI::App* group, cli::CommandSet& commands) {
  auto run = std::make_shared<std::string>();
  auto job = std::make_shared<std::string>();
  cli::Command& cmd = commands.add(group, "logs", "print the log of a run's Slurm job (default: the latest)");
  cmd.app->add_option("--run", *run, "run directory (train.out of the submitted config)")->required();
  cmd.app->add_option("--job", *job, "job id (default: the run's latest job)");
  cmd.run = [run, job] {
    const std::string path = slurm::log_path(fs::absolute(*run).lexically_normal().string(), *job);
    std::ifstream in(path);
    if (!in) throw Error("no log at " + path + " yet (is the job still pending? see `ftune slurm status`)");
    std::cout << in.rdbuf();
    return 0;
  };
}

}  // namespace

void register_slurm_commands(CLI::App& root, cli::CommandSet& commands) {
  CLI::App* group = cli::CommandSet::group(&root, "slurm", "Slurm batch jobs: submit, status, logs");
  register_submit(group, commands);
  register_status(group, commands);
  register_logs(group, commands);
}

}  // namespace ftune
