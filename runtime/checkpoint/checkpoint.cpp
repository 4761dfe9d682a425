// Hugging Face checkpoint directories: `model.safetensors`, or shards listed in
// `model.safetensors.index.json`. Single files are handled in safetensors.cpp.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/text.h"
#include "runtime/checkpoint/posix_file.h"
#include "runtime/checkpoint/safetensors.h"

namespace ftune::st {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string join_path(const std::string& dir, const std::string& name) { return dir + "/" + name; }

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// weight_map of an index file: tensor name -> shard file name (relative to the directory).
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  std::ifstream in(index_path);
  if (!in) throw Error(index_path + ": cannot open for reading");
  std::stringstream text;
  text << in.rdbuf();
  json root;
  try {
    root = json::parse(text.str());
  } catch (const json::exception& e) {
    throw Error(index_path + ": not valid JSON: " + e.what());
  }
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    throw Error(index_path + ": expected an object with a \"weight_map\" object {tensor: shard file}");
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : root["weight_map"].items()) {
    if (!file.is_string()) throw Error(index_path + ": weight_map entry '" + name + "' must be a file name string");
    const std::string f = file.get<std::string>();
    // Shards live in the checkpoint directory; refuse names that would escape it.
    if (f.empty() || f[0] == '/' || f.find("..") != std::string::npos) {
      throw Error(index_path + ": weight_map entry '" + name + "' names shard '" + f +
                  "', which is not a file inside the checkpoint directory");
    }
    map[name] = f;
  }
  return map;
}

std::string shard_name(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

// Greedy split in the given order: a shard closes when the next tensor would push it past
// max_bytes. A tensor larger than max_bytes gets a shard of its own (as transformers does).
std::vector<std::vector<TensorView>> plan_shards(const std::vector<TensorView>& tensors, uint64_t max_bytes) {
  std::vector<std::vector<TensorView>> shards(1);
  uint64_t used = 0;
  for (const auto& t : tensors) {
    const uint64_t n = t.nbytes();
    if (!shards.back().empty() && used + n > max_bytes) {
      shards.emplace_back();
      used = 0;
    }
    shards.back().push_back(t);
    used += n;
  }
  return shards;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  const std::string index_path = join_path(dir, kIndexFile);
  if (!is_file(index_path)) {
    const std::string single = join_path(dir, kSingleFile);
    if (!is_file(single)) {
      throw Error(dir + ": not a Hugging Face checkpoint: neither " + kSingleFile + " nor " + kIndexFile + " found");
    }
    ck.files_.push_back(SafetensorsFile::open(single));
    for (const auto& t : ck.files_[0]->tensors()) ck.where_[t.name] = {0, &t};
    return ck;
  }
  const auto weight_map = read_weight_map(index_path);
  std::set<std::string> shard_files;
  for (const auto& [name, file] : weight_map) shard_files.insert(file);
  std::vector<std::string> missing;
  for (const auto& f : shard_files) {
    if (!is_file(join_path(dir, f))) missing.push_back(f);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& f : missing) list += (list.empty() ? "" : ", ") + f;
    throw Error(index_path + ": " + std::to_string(missing.size()) + " shard file(s) listed in weight_map do not exist in " +
                dir + ": " + list);
  }
  std::map<std::string, size_t> file_index;
  for (const auto& f : shard_files) {
    file_index[f] = ck.files_.size();
    ck.files_.push_back(SafetensorsFile::open(join_path(dir, f)));
  }
  for (const auto& [name, file] : weight_map) {
    const size_t k = file_index.at(file);
    const TensorInfo* t = ck.files_[k]->find(name);
    if (t == nullptr) {
      throw Error(index_path + ": weight_map puts tensor '" + name + "' in " + file + ", but that file does not contain it");
    }
    ck.where_[name] = {k, t};
  }
  return ck;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, loc] : where_) out.push_back(name);
  return out;
}

bool Checkpoint::contains(const std::string& name) const { return where_.count(name) > 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    std::string msg = dir_ + ": checkpoint has no tensor '" + name + "'";
    const std::string guess = closest_match(name, names());
    if (!guess.empty()) msg += " (did you mean '" + guess + "'?)";
    throw Error(msg);
  }
  return *it->second.second;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  info(name);  // throws with a suggestion when missing
  return *files_[where_.at(name).first];
}

void Checkpoint::require(const std::vector<std::string>& required) const {
  std::vector<std::string> missing;
  for (const auto& name : required) {
    if (!contains(name)) missing.push_back(name);
  }
  if (missing.empty()) return;
  std::string msg = dir_ + ": checkpoint lacks " + std::to_string(missing.size()) + " of " +
                    std::to_string(required.size()) + " required tensors:";
  for (const auto& name : missing) msg += "\n  " + name;
  throw Error(msg);
}

void write_checkpoint(const std::string& dir, const std::vector<TensorView>& tensors, uint64_t max_shard_bytes,
                      const std::map<std::string, std::string>& metadata) {
  write_checkpoint_by_shard(dir, tensors, [](const std::vector<TensorView>& shard) { return shard; },
                            max_shard_bytes, metadata);
}

void write_checkpoint_by_shard(const std::string& dir, const std::vector<TensorView>& specs, const ShardMaker& make,
                               uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  // Checked across shards here; write_file only sees one shard's names.
  std::set<std::string> names;
  for (const auto& t : specs) {
    if (!names.insert(t.name).second) throw Error(dir + ": tensor '" + t.name + "' is given twice");
    try {
      t.nbytes();
    } catch (const Error& e) {
      throw Error(dir + ": " + e.what());
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create checkpoint directory: " + ec.message());
  const auto shards = plan_shards(specs, max_shard_bytes);
  const std::string index_path = join_path(dir, kIndexFile);
  // The views `make` returns must describe the specs it was given, in order.
  auto made = [&](const std::vector<TensorView>& shard) {
    std::vector<TensorView> views = make(shard);
    FTUNE_CHECK(views.size() == shard.size(), "a shard maker returned another number of tensors");
    for (size_t i = 0; i < views.size(); ++i)
      FTUNE_CHECK(views[i].name == shard[i].name && views[i].nbytes() == shard[i].nbytes(),
                  "a shard maker changed tensor '" + shard[i].name + "'");
    return views;
  };
  if (shards.size() == 1) {
    write_file(join_path(dir, kSingleFile), made(shards[0]), metadata);
    // A stale index from an earlier sharded export would win over the new file when loading.
    fs::remove(index_path, ec);
    return;
  }
  ShardedCheckpointWriter writer(dir, shards.size(), metadata);
  for (size_t k = 0; k < shards.size(); ++k) writer.write_shard(k + 1, made(shards[k]));
  writer.finish();  // the index goes last: once it exists, every shard it names is complete
}

ShardedCheckpointWriter::ShardedCheckpointWriter(std::string dir, size_t num_shards,
                                                 std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), num_shards_(num_shards), metadata_(std::move(metadata)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create checkpoint directory: " + ec.message());
  fs::remove(join_path(dir_, kSingleFile), ec);  // would shadow the index when loading
}

void ShardedCheckpointWriter::write_shard(size_t k, const std::vector<TensorView>& tensors) {
  FTUNE_CHECK(k >= 1 && k <= num_shards_, "shard number out of range");
  const std::string name = shard_name(k, num_shards_);
  write_file(join_path(dir_, name), tensors, metadata_);
  for (const auto& t : tensors) {
    if (!weight_map_.emplace(t.name, name).second)
      throw Error(dir_ + ": tensor '" + t.name + "' is given twice");
    total_ += t.nbytes();
  }
}

void ShardedCheckpointWriter::finish() {
  json weight_map(weight_map_);
  const std::string text =
      json{{"metadata", {{"total_size", total_}}}, {"weight_map", weight_map}}.dump(2) + "\n";
  detail::AtomicFile out(join_path(dir_, kIndexFile));
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace ftune::st
