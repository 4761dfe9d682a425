// The Slurm side of a run directory: submitting the rendered script with the cluster's own
// sbatch, the record of the run's jobs (RUN/slurm/jobs.tsv) and reading their state back with
// scontrol. Only the cluster's commands on PATH are used; their messages are passed on.
#pragma once

#include <string>
#include <vector>

namespace ftune::slurm {

struct JobRecord {
  std::string id, submitted, script;  // submitted: ISO time
};

// `sbatch --parsable [--wait] script`: prints the job id as soon as sbatch gives it, appends
// it to RUN/slurm/jobs.tsv, and returns sbatch's exit code (with --wait: the job's). Throws
// ftune::Error with sbatch's own message when it refuses the job, or when sbatch is not on PATH.
int submit(const std::string& run_dir, const std::string& script, bool wait);

std::vector<JobRecord> read_jobs(const std::string& run_dir);

// `scontrol show job -o ID` as KEY=value pairs (JobState, ExitCode, Restarts, NodeList,
// RunTime, ...); empty when the controller no longer knows the job.
std::vector<std::pair<std::string, std::string>> job_info(const std::string& id);

// The status report of a run: its jobs and their states, its latest checkpoint, whether it
// completed.
std::string run_status(const std::string& run_dir);

// The log file of one of the run's jobs ("" = the latest).
std::string log_path(const std::string& run_dir, const std::string& job_id);

}  // namespace ftune::slurm
