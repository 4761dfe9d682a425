#include "runtime/train/checkpoint.h"

#include <ftw.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/checkpoint/posix_file.h"
#include "runtime/checkpoint/safetensors.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kFormatVersion = 2;  // 2: eval history and rng in meta.json
constexpr const char* kDoneFile = "DONE";

// std::filesystem::remove_all cannot be used in a process that loads LibTorch (libtorch.so
// exports its own std::filesystem symbols and that remove_all crashes); nftw does the same.
void remove_tree(const std::string& path) {
  if (!fs::exists(path)) return;
  nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); },
       16, FTW_DEPTH | FTW_PHYS);
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%06lld", (long long)step);
  return buf;
}

std::string rank_file(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "rank-%05d-of-%05d.safetensors", rank, world);
  return buf;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  st::detail::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

json eval_json(const TrainState& s) {
  return {{"best", s.best ? json(*s.best) : json(nullptr)}, {"best_step", s.best_step},
          {"evals_since_best", s.evals_since_best}};
}

json fingerprint_json(const DataFingerprint& d) {
  return {{"shards", d.shards}, {"val_shards", d.val_shards}, {"packing", d.packing},
          {"seq_len", d.seq_len}, {"global_batch", d.global_batch}, {"seed", d.seed},
          {"val_fraction", d.val_fraction}};
}

std::string prefix_of(const sharding::OptimParam& p) {
  return (p.unit >= 0 ? "slice." : "whole.") + p.name;
}

// The complete checkpoints under dir, oldest first.
std::vector<std::string> complete_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.find('.') == std::string::npos &&
        fs::exists(e.path() / kDoneFile))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void write_rank_file(const std::string& path, const OptimizerState& optim, int rank) {
  std::vector<at::Tensor> keep;
  std::vector<st::TensorView> views;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    keep.push_back(t.detach().to(at::kCPU, at::kFloat).contiguous());
    views.push_back({name, st::DType::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  };
  for (size_t i = 0; i < optim.params->size(); ++i) {
    const auto& p = (*optim.params)[i];
    if (p.unit < 0 && rank != 0) continue;  // shared tensors: rank 0 writes them once
    add(prefix_of(p) + ".param", p.param);
    for (const auto& [name, t] : optim.state(i)) add(prefix_of(p) + "." + name, t);
  }
  st::write_file(path, views, {{"format", "ftune-checkpoint"}});
}

}  // namespace

std::string save_checkpoint(const std::string& out_dir, const TrainState& state,
                            const DataFingerprint& data, const std::string& config_toml,
                            sharding::ShardedUnits& engine, const OptimizerState& optim,
                            comm::Communicator& comm, int keep, bool keep_best) {
  const std::string root = out_dir + "/checkpoints";
  const std::string final_dir = root + "/" + step_name(state.step);
  const std::string tmp = final_dir + ".tmp";
  if (comm.rank() == 0) {
    remove_tree(tmp);
    fs::create_directories(tmp);
  }
  comm.barrier();
  // Fault injection for the crash-safety test: the last rank dies before writing its slice.
  if (const char* at = std::getenv("FTUNE_FAULT_CHECKPOINT_STEP");
      at != nullptr && std::atoll(at) == state.step && comm.rank() == comm.size() - 1)
    std::raise(SIGKILL);
  write_rank_file(tmp + "/" + rank_file(comm.rank(), comm.size()), optim, comm.rank());
  comm.barrier();  // every rank's file is complete
  if (comm.rank() == 0) {
    json units = json::object();
    for (const auto& p : *optim.params)
      if (p.unit >= 0) units[p.name] = engine.layout(size_t(p.unit)).numel();
    json meta = {{"format_version", kFormatVersion}, {"step", state.step}, {"tokens", state.tokens},
                 {"skipped", state.skipped}, {"eval", eval_json(state)},
                 {"rng", {{"seed", state.seed}, {"scheme", "dropout seeded by (seed, step, rank, micro-batch)"}}},
                 {"reader", {{"epoch", state.reader.epoch}, {"sample", state.reader.sample}}},
                 {"world_size", comm.size()}, {"units", units},
                 {"optimizer_steps", optim.steps()}, {"data", fingerprint_json(data)},
                 {"config", config_toml}};
    write_text_atomic(tmp + "/meta.json", meta.dump(2) + "\n");
    write_text_atomic(tmp + "/" + kDoneFile, "");
    remove_tree(final_dir);
    fs::rename(tmp, final_dir);
    write_text_atomic(root + "/latest", step_name(state.step) + "\n");
    const bool is_best = state.best && state.best_step == state.step;
    if (is_best) write_text_atomic(root + "/best", step_name(state.step) + "\n");
    const std::string best = root + "/" + step_name(state.best_step);
    auto all = complete_checkpoints(root);
    for (size_t i = 0; i + size_t(std::max(1, keep)) < all.size(); ++i)
      if (!(keep_best && state.best && all[i] == best)) remove_tree(all[i]);
  }
  comm.barrier();
  return final_dir;
}

namespace {

// The complete checkpoint a pointer file (`latest`, `best`) under checkpoints/ names, if any.
std::optional<std::string> pointed_checkpoint(const std::string& root, const char* pointer) {
  std::ifstream in(root + "/" + pointer);
  std::string name;
  if (in >> name && fs::exists(fs::path(root) / name / kDoneFile)) return root + "/" + name;
  return std::nullopt;
}

}  // namespace

std::optional<std::string> best_checkpoint(const std::string& out_dir) {
  return pointed_checkpoint(out_dir + "/checkpoints", "best");
}

std::optional<std::string> checkpoint_to_resume(const std::string& resume, const std::string& out_dir) {
  if (resume == "none") return std::nullopt;
  if (resume != "auto") {
    if (!fs::exists(fs::path(resume) / kDoneFile))
      throw Error("checkpoint.resume = " + resume + ": not a complete checkpoint (no " + kDoneFile +
                  " marker); give a checkpoints/step-* directory, auto or none");
    return resume;
  }
  const std::string root = out_dir + "/checkpoints";
  if (auto latest = pointed_checkpoint(root, "latest")) return latest;
  auto all = complete_checkpoints(root);  // `latest` missing or stale: the newest complete one
  if (all.empty()) return std::nullopt;
  return all.back();
}

namespace {

void check_fingerprint(const json& saved, const DataFingerprint& now, const std::string& dir) {
  json cur = fingerprint_json(now);
  for (auto it = cur.begin(); it != cur.end(); ++it) {
    if (!saved.contains(it.key()) || saved[it.key()] != it.value())
      throw Error("resume from " + dir + ": data." + it.key() + " was " +
                  (saved.contains(it.key()) ? saved[it.key()].dump() : "unset") + " in the checkpoint and is " +
                  it.value().dump() + " now, which would change the order of the samples; "
                  "set it back, or start afresh with --resume none");
  }
}

// Copies flat elements [begin, end) of the writers' slices of `tensor` into dst (float32 on
// the CPU); each writer q of `world` held [q * per, (q + 1) * per).
void read_resliced(const std::vector<std::unique_ptr<st::SafetensorsFile>>& files,
                   const std::string& tensor, int64_t per, int64_t begin, int64_t end, float* dst) {
  for (size_t q = 0; q < files.size(); ++q) {
    const int64_t lo = std::max(begin, int64_t(q) * per), hi = std::min(end, int64_t(q + 1) * per);
    if (lo >= hi) continue;
    const st::TensorInfo* info = files[q]->find(tensor);
    if (info == nullptr) throw Error(files[q]->path() + ": no tensor " + tensor);
    files[q]->read_range(*info, uint64_t(lo - int64_t(q) * per) * 4, uint64_t(hi - lo) * 4, dst + (lo - begin));
  }
}

}  // namespace

TrainState load_checkpoint(const std::string& dir, const DataFingerprint& data,
                           sharding::ShardedUnits& engine, const OptimizerState& optim,
                           comm::Communicator& comm) {
  std::ifstream in(dir + "/meta.json");
  if (!in) throw Error(dir + ": no meta.json; not a checkpoint");
  json meta = json::parse(in, nullptr, false);
  if (meta.is_discarded() || meta.value("format_version", 0) != kFormatVersion)
    throw Error(dir + "/meta.json: unreadable or of another format version");
  check_fingerprint(meta["data"], data, dir);
  const int old_world = meta["world_size"].get<int>();
  std::vector<std::unique_ptr<st::SafetensorsFile>> files;
  for (int q = 0; q < old_world; ++q) files.push_back(st::SafetensorsFile::open(dir + "/" + rank_file(q, old_world)));
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < optim.params->size(); ++i) {
    const auto& p = (*optim.params)[i];
    std::vector<std::pair<std::string, at::Tensor>> targets = {{"param", p.param}};
    for (auto& s : optim.state(i)) targets.push_back(s);
    for (auto& [kind, t] : targets) {
      const std::string name = prefix_of(p) + "." + kind;
      at::Tensor host = at::zeros({t.numel()}, at::kFloat);  // padding stays zero
      if (p.unit >= 0) {
        const int64_t numel = engine.layout(size_t(p.unit)).numel();
        if (!meta["units"].contains(p.name) || meta["units"][p.name] != numel)
          throw Error(dir + ": unit " + p.name + " has " + std::to_string(numel) +
                      " elements in this model but not in the checkpoint; is it the same model?");
        const int64_t per = (numel + old_world - 1) / old_world;
        const int64_t begin = int64_t(comm.rank()) * t.numel();
        read_resliced(files, name, per, begin, std::min(numel, begin + t.numel()), host.data_ptr<float>());
      } else {
        const st::TensorInfo* info = files[0]->find(name);
        if (info == nullptr || info->numel() != t.numel())
          throw Error(files[0]->path() + ": no tensor " + name + " of " + std::to_string(t.numel()) + " elements");
        files[0]->read_range(*info, 0, info->nbytes(), host.data_ptr<float>());
      }
      t.detach().view({-1}).copy_(host);
    }
  }
  optim.set_steps(meta["optimizer_steps"].get<int64_t>());
  TrainState s;
  s.step = meta["step"].get<int64_t>();
  s.tokens = meta["tokens"].get<int64_t>();
  s.skipped = meta["skipped"].get<int64_t>();
  s.reader.epoch = meta["reader"]["epoch"].get<int64_t>();
  s.reader.sample = meta["reader"]["sample"].get<int64_t>();
  const json& e = meta["eval"];
  if (e.contains("best") && !e["best"].is_null()) s.best = e["best"].get<double>();
  s.best_step = e.value("best_step", int64_t(0));
  s.evals_since_best = e.value("evals_since_best", int64_t(0));
  s.seed = meta["rng"].value("seed", int64_t(0));
  return s;
}

}  // namespace ftune::train
