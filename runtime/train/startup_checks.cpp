#include "runtime/train/startup_checks.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/error.h"
#include "common/sha256.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;

void check_readable(const std::string& key, const std::string& path, const std::string& want,
                    const comm::World& w) {
  if (path.empty()) return;
  const fs::path p = want.empty() ? fs::path(path) : fs::path(path) / want;
  if (access(p.c_str(), R_OK) == 0) return;
  throw Error(key + " = " + path + ": " + p.string() + " is not readable from " + comm::node_name(w) +
              " (rank " + std::to_string(w.rank) + ": " + std::strerror(errno) + "); every node needs the "
              "same path, e.g. on a shared file system");
}

// What must be equal on every rank, as fixed-size text for one all_gather.
constexpr size_t kIdentityBytes = 192;

std::string identity_of(const TrainConfig& cfg) {
  return sha256_hex(cfg.resolved_toml).substr(0, 16) + " " + binary_version();
}

void check_same_everywhere(const TrainConfig& cfg, const comm::World& w, comm::Communicator& comm) {
  std::string mine = identity_of(cfg);
  mine.resize(kIdentityBytes - 1);
  std::vector<char> send(kIdentityBytes, '\0'), all(kIdentityBytes * size_t(comm.size()), '\0');
  std::memcpy(send.data(), mine.data(), mine.size());
  comm.all_gather(send.data(), all.data(), kIdentityBytes, comm::DType::u8);
  const std::string first(all.data());
  for (int q = 1; q < comm.size(); ++q) {
    const std::string other(all.data() + kIdentityBytes * size_t(q));
    if (other == first) continue;
    const bool config = other.substr(0, 16) != first.substr(0, 16);
    throw Error(std::string("[train] rank ") + std::to_string(q) + " runs " +
                (config ? "another config" : "another ftune binary") + " than rank 0 (config hash and " +
                "version: rank 0 '" + first.c_str() + "', rank " + std::to_string(q) + " '" + other.c_str() +
                "'): start every rank with the same command, config file and ftune build (seen on rank " +
                std::to_string(w.rank) + ")");
  }
}

}  // namespace

std::string binary_version() {
  return std::string("ftune ") + FTUNE_VERSION + " (libftune_torch built " + __DATE__ + " " + __TIME__ + ")";
}

void run_startup_checks(const TrainConfig& cfg, const comm::World& w, comm::Communicator& comm,
                        const comm::GpuBinding& gpu) {
  comm::cross_check_launcher_env(w);
  check_readable("model.path", cfg.model.path, "config.json", w);
  check_readable("data.shards", cfg.data.shards, "", w);
  check_readable("data.val_shards", cfg.data.val_shards, "", w);
  check_same_everywhere(cfg, w, comm);
  const auto rows = comm::gather_placement(w, comm, gpu);
  if (w.rank == 0) std::fprintf(stderr, "%s", comm::placement_table(rows).c_str());
  comm::check_distinct_gpus(rows);
}

}  // namespace ftune::train
