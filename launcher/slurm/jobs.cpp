#include "launcher/slurm/jobs.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"
#include "launcher/launch/process.h"
#include "runtime/train/preemption.h"

namespace ftune::slurm {
namespace {

std::string require_tool(const std::string& name) {
  const std::string path = launch::find_on_path(name);
  if (path.empty()) {
    const char* p = std::getenv("PATH");
    throw Error(name + " is not on PATH (" + std::string(p ? p : "") + "): run this on a Slurm login node, "
                "or install the Slurm client (slurm-client); --dry-run renders the script without it");
  }
  return path;
}

bool is_job_id(const std::string& line) {
  const std::string id = line.substr(0, line.find(';'));  // "123;cluster" on federations
  return !id.empty() && id.find_first_not_of("0123456789") == std::string::npos;
}

std::string now_iso() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string value_of(const std::vector<std::pair<std::string, std::string>>& kv, const std::string& key) {
  for (const auto& [k, v] : kv)
    if (k == key) return v;
  return "";
}

// The last step in metrics.jsonl ("" when none).
std::string last_metrics_step(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  const size_t at = last.find("\"step\":");
  if (at == std::string::npos) return "";
  return last.substr(at + 7, last.find_first_of(",}", at) - at - 7);
}

}  // namespace

int submit(const std::string& run_dir, const std::string& script, bool wait) {
  std::vector<std::string> argv = {require_tool("sbatch"), "--parsable"};
  if (wait) argv.push_back("--wait");
  argv.push_back(script);
  std::string id, said;
  const int rc = launch::run_reading_lines(argv, [&](const std::string& line) {
    if (id.empty() && is_job_id(line)) {
      id = line.substr(0, line.find(';'));
      std::ofstream(run_dir + "/slurm/jobs.tsv", std::ios::app) << id << "\t" << now_iso() << "\t" << script << "\n";
      std::cout << "[slurm] submitted job " << id << "; log " << log_path(run_dir, id) << std::endl;
      if (wait) std::cout << "[slurm] waiting for job " << id << " to end (requeues included)" << std::endl;
      return;
    }
    said += line + "\n";
    std::cerr << line << "\n";
  });
  if (id.empty())
    throw Error("sbatch refused the job (exit code " + std::to_string(rc) + "): " +
                (said.empty() ? std::string("no message") : said.substr(0, said.find_last_not_of('\n') + 1)) +
                "\n  script: " + script);
  if (wait) std::cout << "[slurm] job " << id << " ended with exit code " << rc << std::endl;
  return rc;
}

std::vector<JobRecord> read_jobs(const std::string& run_dir) {
  std::vector<JobRecord> jobs;
  std::istringstream in(read_text(run_dir + "/slurm/jobs.tsv"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    JobRecord r;
    if (std::getline(f, r.id, '\t') && std::getline(f, r.submitted, '\t') && std::getline(f, r.script))
      jobs.push_back(r);
  }
  return jobs;
}

std::vector<std::pair<std::string, std::string>> job_info(const std::string& id) {
  std::string text;
  launch::run_reading_lines({require_tool("scontrol"), "show", "job", "-o", id},
                            [&](const std::string& line) { text += line + " "; });
  std::vector<std::pair<std::string, std::string>> kv;
  if (text.find("JobId=") == std::string::npos) return kv;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    const size_t eq = w.find('=');
    if (eq != std::string::npos) kv.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return kv;
}

std::string run_status(const std::string& run_dir) {
  const auto jobs = read_jobs(run_dir);
  if (jobs.empty()) throw Error(run_dir + ": no Slurm jobs recorded (no slurm/jobs.tsv); submit with `ftune slurm submit`");
  std::string out = "[slurm] run " + run_dir + "\n";
  for (const auto& j : jobs) {
    const auto kv = job_info(j.id);
    out += "  job " + j.id + " submitted " + j.submitted + ": ";
    if (kv.empty()) out += "no longer known to the controller\n";
    else
      out += value_of(kv, "JobState") + ", restarts " + value_of(kv, "Restarts") + ", exit code " +
             value_of(kv, "ExitCode") + ", run time " + value_of(kv, "RunTime") + ", nodes " +
             value_of(kv, "NodeList") + "\n";
  }
  const std::string latest = read_text(run_dir + "/checkpoints/latest");
  const std::string step = last_metrics_step(run_dir);
  out += "  latest checkpoint: " + (latest.empty() ? std::string("none\n") : latest);
  out += "  last logged step: " + (step.empty() ? std::string("none") : step) + "\n";
  const std::string done = read_text(run_dir + "/" + train::kCompleteFile);
  out += "  complete: " + (done.empty() ? std::string("no\n") : "yes (" + done.substr(0, done.find('\n')) + ")\n");
  return out;
}

std::string log_path(const std::string& run_dir, const std::string& job_id) {
  std::string id = job_id;
  if (id.empty()) {
    const auto jobs = read_jobs(run_dir);
    if (jobs.empty()) throw Error(run_dir + ": no Slurm jobs recorded (no slurm/jobs.tsv)");
    id = jobs.back().id;
  }
  return run_dir + "/slurm/job-" + id + ".out";
}

}  // namespace ftune::slurm
