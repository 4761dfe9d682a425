#include "runtime/comm/placement.h"

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "common/error.h"

namespace ftune::comm {
namespace {

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

const char* env(const char* name) { return std::getenv(name); }

// name's value as an int, or `fallback` when unset or not a number.
int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return *end == '\0' ? int(n) : fallback;
}

void expect_equal(const char* var, int mpi_value, const char* what, const World& w) {
  const int v = env_int(var, mpi_value);
  if (v == mpi_value) return;
  throw Error("[comm] " + std::string(var) + "=" + env(var) + " but MPI says " + what + " " +
              std::to_string(mpi_value) + " (rank " + std::to_string(w.rank) + " on " + w.host +
              "): was this process started by another launcher than the one of its job? Start "
              "every rank with one mpirun or one srun");
}

// Fixed-size records for one all_gather: "rank|local|local_size|node|numa|host|gpu".
constexpr size_t kRowBytes = 256;

std::string encode(const PlacementRow& r) {
  return std::to_string(r.rank) + "|" + std::to_string(r.local_rank) + "|" +
         std::to_string(r.local_size) + "|" + std::to_string(r.node) + "|" + std::to_string(r.numa) +
         "|" + r.host + "|" + r.gpu;
}

PlacementRow decode(const char* bytes) {
  std::string s(bytes, strnlen(bytes, kRowBytes));
  std::vector<std::string> f;
  size_t start = 0;
  for (size_t bar; (bar = s.find('|', start)) != std::string::npos; start = bar + 1)
    f.push_back(s.substr(start, bar - start));
  f.push_back(s.substr(start));
  FTUNE_CHECK(f.size() == 7, "placement record: " + s);
  PlacementRow r;
  r.rank = std::atoi(f[0].c_str());
  r.local_rank = std::atoi(f[1].c_str());
  r.local_size = std::atoi(f[2].c_str());
  r.node = std::atoi(f[3].c_str());
  r.numa = std::atoi(f[4].c_str());
  r.host = f[5];
  r.gpu = f[6];
  return r;
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace

GpuBinding bind_gpu(const World& w, int device_count, const char* visible) {
  const std::vector<std::string> ids = visible ? split_list(visible, ',') : std::vector<std::string>{};
  const std::string shown = visible ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")" : "";
  if (device_count <= 0)
    throw Error("[comm] " + node_name(w) + " shows no GPU" + shown + " for its " + std::to_string(w.local_size) +
                " local rank(s): run on GPU nodes, or set model.device = cpu");
  if (w.local_size > device_count)
    throw Error("[comm] " + node_name(w) + " has " + std::to_string(w.local_size) +
                " local ranks but " + std::to_string(device_count) + " GPU(s)" + shown +
                ": start one rank per GPU (ftune launch -n / --hosts host:" + std::to_string(device_count) +
                ", srun --ntasks-per-node=" + std::to_string(device_count) + ") or make more GPUs visible");
  GpuBinding b;
  b.device = w.local_rank;
  b.name = size_t(w.local_rank) < ids.size() ? ids[size_t(w.local_rank)] : std::to_string(w.local_rank);
  return b;
}

std::string node_name(const World& w) {
  const char* slurm = env("SLURMD_NODENAME");
  return slurm && *slurm ? slurm : w.host;
}

int current_numa_node() {
  const int cpu = sched_getcpu();
  if (cpu < 0) return -1;
  const std::filesystem::path dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("node", 0) == 0 && name.size() > 4) return std::atoi(name.c_str() + 4);
  }
  return -1;
}

void cross_check_launcher_env(const World& w) {
  expect_equal("OMPI_COMM_WORLD_RANK", w.rank, "rank", w);
  expect_equal("OMPI_COMM_WORLD_SIZE", w.size, "world size", w);
  expect_equal("PMIX_RANK", w.rank, "rank", w);
  // Under mpirun (its daemons set orte_hnp_uri) SLURM_PROCID and SLURM_NTASKS describe the
  // orted step, not the ranks; only a step whose tasks are the ranks is comparable.
  const bool srun_tasks = env("OMPI_MCA_orte_hnp_uri") == nullptr &&
                          env_int("SLURM_STEP_NUM_TASKS", -1) == w.size;
  if (srun_tasks) {
    expect_equal("SLURM_PROCID", w.rank, "rank", w);
    expect_equal("SLURM_STEP_NUM_TASKS", w.size, "world size", w);
  }
}

std::vector<PlacementRow> gather_placement(const World& w, Communicator& comm, const GpuBinding& gpu) {
  PlacementRow mine;
  mine.rank = w.rank;
  mine.local_rank = w.local_rank;
  mine.local_size = w.local_size;
  mine.node = w.node;
  mine.numa = current_numa_node();
  mine.host = node_name(w);
  mine.gpu = gpu.name;
  std::string rec = encode(mine);
  if (rec.size() >= kRowBytes) rec.resize(kRowBytes - 1);  // a host name of ~200 characters
  std::vector<char> send(kRowBytes, '\0'), all(kRowBytes * size_t(comm.size()), '\0');
  std::memcpy(send.data(), rec.data(), rec.size());
  comm.all_gather(send.data(), all.data(), kRowBytes, DType::u8);
  std::vector<PlacementRow> rows;
  for (int q = 0; q < comm.size(); ++q) rows.push_back(decode(all.data() + kRowBytes * size_t(q)));
  return rows;
}

std::string placement_table(const std::vector<PlacementRow>& rows) {
  size_t host_w = 4;
  std::map<std::string, int> nodes;
  for (const auto& r : rows) {
    host_w = std::max(host_w, r.host.size());
    nodes[r.host] += 1;
  }
  std::string out = "[comm] placement: " + std::to_string(rows.size()) + " rank(s) on " +
                    std::to_string(nodes.size()) + " node(s)\n";
  out += "  rank  " + pad("host", host_w) + "  local  gpu   numa\n";
  for (const auto& r : rows) {
    char rank[16];
    std::snprintf(rank, sizeof rank, "%6d", r.rank);
    out += std::string(rank) + "  " + pad(r.host, host_w) + "  " +
           pad(std::to_string(r.local_rank) + "/" + std::to_string(r.local_size), 5) + "  " +
           pad(r.gpu.empty() ? "-" : r.gpu, 4) + "  " + (r.numa < 0 ? "-" : std::to_string(r.numa)) + "\n";
  }
  return out;
}

void check_distinct_gpus(const std::vector<PlacementRow>& rows) {
  std::map<std::pair<std::string, std::string>, int> owner;
  for (const auto& r : rows) {
    if (r.gpu.empty()) continue;
    auto [it, fresh] = owner.emplace(std::make_pair(r.host, r.gpu), r.rank);
    if (!fresh)
      throw Error("[comm] ranks " + std::to_string(it->second) + " and " + std::to_string(r.rank) +
                  " on " + r.host + " both bound GPU " + r.gpu + ": give each rank of a node its own "
                  "GPU (one rank per GPU; check CUDA_VISIBLE_DEVICES and the launcher's GPU binding)");
  }
}

}  // namespace ftune::comm
