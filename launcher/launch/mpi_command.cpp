#include "launcher/launch/mpi_command.h"

#include <fstream>
#include <numeric>
#include <sstream>

#include "common/error.h"

namespace ftune::launch {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

// A positive slot count, or -1.
int parse_slots(const std::string& s) {
  if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  const int n = std::stoi(s);
  return n > 0 ? n : -1;
}

bool valid_host_name(const std::string& s) {
  return !s.empty() && s.find_first_of(" \t:=,") == std::string::npos;
}

// "a", "a:8": the host, or slots -1 when it does not parse.
Host parse_host_colon(const std::string& entry) {
  Host h;
  const size_t colon = entry.find(':');
  h.name = entry.substr(0, colon);
  h.slots = colon == std::string::npos ? 1 : parse_slots(entry.substr(colon + 1));
  if (!valid_host_name(h.name)) h.slots = -1;
  return h;
}

// Open MPI's hostfile forms: "a", "a:8", "a slots=8 [max_slots=16]".
Host parse_hostfile_line(const std::string& line) {
  std::istringstream words(line);
  std::string first, word;
  words >> first;
  Host h = parse_host_colon(first);
  bool have_slots = first.find(':') != std::string::npos;
  while (h.slots > 0 && words >> word) {
    if (word.rfind("slots=", 0) == 0 && !have_slots) {
      h.slots = parse_slots(word.substr(6));
      have_slots = true;
    } else if (word.rfind("max_slots=", 0) == 0 && parse_slots(word.substr(10)) > 0) {
      continue;
    } else {
      h.slots = -1;
    }
  }
  return h;
}

bool forwarded(const std::string& name) {
  for (const char* prefix : {"NCCL_", "CUDA_", "HDF5_", "FTUNE_"})
    if (name.rfind(prefix, 0) == 0) return true;
  return name == "OMP_NUM_THREADS";
}

int total_slots(const std::vector<Host>& hosts) {
  return std::accumulate(hosts.begin(), hosts.end(), 0, [](int n, const Host& h) { return n + h.slots; });
}

std::vector<Host> hosts_of(const LaunchOptions& o) {
  if (!o.hosts.empty() && !o.hostfile.empty())
    throw Error("ftune launch: give --hosts or --hostfile, not both");
  if (!o.hosts.empty()) return parse_hosts(o.hosts);
  if (!o.hostfile.empty()) return parse_hostfile(o.hostfile);
  return {};
}

// Ranks in the job: -n, or what the hosts and --ntasks-per-node give.
int rank_count(const LaunchOptions& o, const std::vector<Host>& hosts) {
  const int nodes = hosts.empty() ? 1 : int(hosts.size());
  const int capacity = o.ntasks_per_node > 0 ? o.ntasks_per_node * nodes : total_slots(hosts);
  const int np = o.np > 0 ? o.np : capacity;
  if (np <= 0)
    throw Error("ftune launch: how many ranks? give -n N, --hosts a:8,b:8, --hostfile FILE or "
                "--ntasks-per-node K");
  if (!hosts.empty() && np > capacity)
    throw Error("ftune launch: -n " + std::to_string(np) + " ranks do not fit the " +
                std::to_string(hosts.size()) + " host(s), which give " + std::to_string(capacity) +
                " slot(s)" + (o.ntasks_per_node > 0 ? " at --ntasks-per-node " + std::to_string(o.ntasks_per_node) : "") +
                ": lower -n or list more slots (host:N)");
  return np;
}

std::string host_list(const std::vector<Host>& hosts) {
  std::string s;
  for (const auto& h : hosts) s += (s.empty() ? "" : ",") + h.name + ":" + std::to_string(h.slots);
  return s;
}

void append(std::vector<std::string>& argv, const std::vector<std::string>& more) {
  argv.insert(argv.end(), more.begin(), more.end());
}

std::vector<std::string> mpirun_part(const LaunchOptions& o, const std::vector<Host>& hosts, int np,
                                     const std::vector<std::string>& environ) {
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(np)};
  if (hosts.empty()) append(argv, {"--oversubscribe"});  // one machine: CPU ranks may exceed its cores
  else append(argv, {"--host", host_list(hosts)});
  if (o.ntasks_per_node > 0) append(argv, {"--map-by", "ppr:" + std::to_string(o.ntasks_per_node) + ":node"});
  append(argv, {"--bind-to", o.bind_to});
  for (const auto& name : forwarded_env(environ)) append(argv, {"-x", name});
  return argv;
}

std::vector<std::string> srun_part(const LaunchOptions& o, int np) {
  // srun exports the whole environment to every node; a rank that fails ends the step.
  std::vector<std::string> argv = {"srun", "--mpi=pmix", "--export=ALL", "--kill-on-bad-exit=1",
                                   "--ntasks=" + std::to_string(np)};
  if (o.ntasks_per_node > 0) argv.push_back("--ntasks-per-node=" + std::to_string(o.ntasks_per_node));
  return argv;
}

}  // namespace

std::vector<Host> parse_hosts(const std::string& spec) {
  std::vector<Host> hosts;
  std::istringstream in(spec);
  for (std::string entry; std::getline(in, entry, ',');) {
    Host h = parse_host_colon(trim(entry));
    if (h.slots <= 0)
      throw Error("--hosts " + spec + ": cannot read '" + trim(entry) + "'; give host:slots entries "
                  "separated by commas, e.g. --hosts a:8,b:8");
    hosts.push_back(h);
  }
  if (hosts.empty()) throw Error("--hosts is empty; give e.g. --hosts a:8,b:8");
  return hosts;
}

std::vector<Host> parse_hostfile_text(const std::string& text, const std::string& file) {
  std::vector<Host> hosts;
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    const std::string body = trim(line.substr(0, line.find('#')));
    if (body.empty()) continue;
    Host h = parse_hostfile_line(body);
    if (h.slots <= 0)
      throw Error(file + ":" + std::to_string(n) + ": cannot read '" + body + "'; a hostfile line is "
                  "`host`, `host:8` or `host slots=8` (Open MPI's form)");
    hosts.push_back(h);
  }
  if (hosts.empty()) throw Error(file + ": no hosts in the hostfile");
  return hosts;
}

std::vector<Host> parse_hostfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("--hostfile " + path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hostfile_text(ss.str(), path);
}

std::vector<std::string> forwarded_env(const std::vector<std::string>& environ) {
  std::vector<std::string> names;
  for (const auto& kv : environ) {
    const std::string name = kv.substr(0, kv.find('='));
    if (forwarded(name)) names.push_back(name);
  }
  return names;
}

std::string choose_launcher(const LaunchOptions& o, bool in_slurm_allocation) {
  if (o.launcher == "mpirun" || o.launcher == "srun") return o.launcher;
  if (o.launcher != "auto")
    throw Error("ftune launch --launcher " + o.launcher + ": give auto, mpirun or srun");
  return in_slurm_allocation ? "srun" : "mpirun";
}

std::vector<std::string> build_command(const LaunchOptions& o, const std::string& launcher,
                                       const std::vector<std::string>& environ,
                                       const std::string& ftune_exe, bool command_is_ftune) {
  if (o.command.empty())
    throw Error("ftune launch: no command; give it after --, e.g. ftune launch -n 2 -- train --config run.toml");
  if (launcher == "srun" && (!o.hosts.empty() || !o.hostfile.empty()))
    throw Error("ftune launch: --hosts/--hostfile do not apply inside a Slurm allocation (srun places "
                "the ranks on its nodes); drop them, or give --launcher mpirun");
  const std::vector<Host> hosts = hosts_of(o);
  const int np = rank_count(o, hosts);
  std::vector<std::string> argv = launcher == "srun" ? srun_part(o, np) : mpirun_part(o, hosts, np, environ);
  append(argv, o.mpi_args);
  if (command_is_ftune) argv.push_back(ftune_exe);
  append(argv, o.command);
  return argv;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    const bool plain = !a.empty() && a.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%") == std::string::npos;
    std::string q = plain ? a : "'";
    if (!plain) {
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      q += "'";
    }
    out += (out.empty() ? "" : " ") + q;
  }
  return out;
}

}  // namespace ftune::launch
