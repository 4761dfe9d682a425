#include "data/pipeline/output_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <sstream>

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/shard_set.h"

namespace ftune::data {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

bool pid_alive(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto paren = line.rfind(')');  // a zombie is gone, only not yet reaped (mpirun's ranks)
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

// Creates the lock file; false when it exists.
bool try_create(const std::string& path, const std::string& contents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw Error("cannot create the lock " + path + ": " + std::strerror(errno));
  }
  bool ok = ::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
  ::close(fd);
  if (!ok) throw Error("cannot write the lock " + path);
  return true;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace

OutputLock::OutputLock(const std::string& dir, const std::string& host, std::ostream& log)
    : path_(dir + "/" + kLockFile) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create shard directory " + dir + ": " + ec.message());
  mine_ = Json{{"host", host}, {"pid", static_cast<long>(::getpid())}, {"since", static_cast<long>(std::time(nullptr))}}.dump() + "\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (try_create(path_, mine_)) return;
    Json holder = Json::parse(read_text(path_), nullptr, false);
    std::string h = holder.is_object() ? holder.value("host", "?") : "?";
    long pid = holder.is_object() ? holder.value("pid", 0L) : 0L;
    if (h == host && !pid_alive(pid)) {
      log << "[data] taking over the stale lock of pid " << pid << " on " << h << " in " << dir
          << " (that process is gone)\n";
      fs::remove(path_, ec);
      continue;
    }
    throw Error("output directory " + dir + " is being written by another run: pid " + std::to_string(pid) +
                " on " + h + " holds " + path_ + "; wait for it to end, or remove the lock if that run is gone");
  }
  throw Error("cannot take the lock " + path_ + " (another run took it first)");
}

OutputLock::~OutputLock() {
  if (read_text(path_) == mine_) std::remove(path_.c_str());  // never another run's lock
}

namespace {

struct DirListing {
  bool index = false, manifest = false;
  std::vector<std::string> shards;  // shard-*.h5 names
};

DirListing list_dir(const std::string& dir) {
  DirListing l;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name == format::kIndexFile) l.index = true;
    else if (name == kManifestFile) l.manifest = true;
    else if (format::is_shard_file_name(name)) l.shards.push_back(name);
  }
  return l;
}

void remove_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(".shard-", 0) == 0) fs::remove(entry.path(), ec);
  }
}

void start_fresh(const std::string& dir, const RunManifest& now) {
  remove_temporaries(dir);
  std::error_code ec;
  fs::remove_all(fs::path(dir) / kItemRecordDir, ec);  // stale records of a run that never wrote a manifest
  fs::create_directories(fs::path(dir) / kItemRecordDir, ec);
  if (ec) throw Error("cannot create " + dir + "/" + kItemRecordDir + ": " + ec.message());
  now.write(dir);
}

[[noreturn]] void mismatch(const std::string& dir, const ItemRecord& r, const std::string& what) {
  throw Error("cannot resume " + dir + ": the manifest does not match the shards: " + kItemRecordDir + "/" +
              item_record_name(r.item) + " " + what + ". Remove that record to redo its item, or start again in an "
              "empty directory");
}

// The record's input range is the plan's, and its shards are on disk as it says.
void check_record(const std::string& dir, const ItemRecord& r, const std::vector<WorkItem>& items,
                  const std::string& tokenizer_hash) {
  if (r.item < 0 || r.item >= static_cast<int64_t>(items.size())) {
    mismatch(dir, r, "names item " + std::to_string(r.item) + " of a plan with " + std::to_string(items.size()));
  }
  const WorkItem& w = items[static_cast<size_t>(r.item)];
  if (w.file != r.file || w.range.begin != r.range.begin || w.range.end != r.range.end) {
    mismatch(dir, r, "covers another input range than this run's item " + std::to_string(r.item));
  }
  int64_t docs = 0, tokens = 0, masked = 0;
  for (const auto& s : r.shards) docs += s.documents, tokens += s.tokens, masked += s.masked_tokens;
  if (docs != r.documents || tokens != r.tokens || masked != r.masked_tokens) {
    mismatch(dir, r, "counts " + std::to_string(r.documents) + " documents and " + std::to_string(r.tokens) +
                         " tokens, its shards " + std::to_string(docs) + " and " + std::to_string(tokens));
  }
  for (const auto& s : r.shards) {
    if (format::item_of_shard_file_name(s.file) != r.item) mismatch(dir, r, "names shard " + s.file + " of another item");
    const std::string path = dir + "/" + s.file;
    if (!fs::exists(path)) mismatch(dir, r, "names " + s.file + ", which is not there");
    ShardMeta m;
    try {
      m = read_shard_meta(path);
    } catch (const Error& e) {
      mismatch(dir, r, "names " + s.file + ", which cannot be read (" + e.what() + ")");
    }
    if (m.documents != s.documents || m.tokens != s.tokens || m.masked_tokens != s.masked_tokens) {
      mismatch(dir, r, "says " + s.file + " holds " + std::to_string(s.documents) + " documents and " +
                           std::to_string(s.tokens) + " tokens, the file holds " + std::to_string(m.documents) +
                           " and " + std::to_string(m.tokens));
    }
    if (m.tokenizer_hash != tokenizer_hash) mismatch(dir, r, "names " + s.file + ", written with another tokenizer");
  }
}

std::string setting(const RunManifest& m, const std::string& key) {
  for (const auto& [k, v] : m.settings) if (k == key) return v;
  return "";
}

OutputState resume_from(const std::string& dir, const DirListing& l, const RunManifest& now,
                        const std::vector<WorkItem>& items, std::ostream& log) {
  RunManifest then = RunManifest::read(dir);
  std::string diff = manifest_difference(then, now);
  if (!diff.empty()) {
    throw Error("cannot resume " + dir + ": this run's settings differ from those it began with:\n" + diff +
                "  rerun with the settings it began with, or write to a new directory");
  }
  OutputState st;
  std::set<std::string> claimed;
  for (ItemRecord& r : read_item_records(dir)) {
    check_record(dir, r, items, setting(now, "tokenizer_hash"));
    for (const auto& s : r.shards) claimed.insert(s.file);
    st.done.emplace(r.item, std::move(r));
  }
  int64_t removed = 0;
  for (const auto& name : l.shards) {
    if (claimed.count(name)) continue;
    int64_t item = format::item_of_shard_file_name(name);
    if (item < 0 || st.done.count(item)) {
      throw Error("cannot resume " + dir + ": the manifest does not match the shards: " + name +
                  " belongs to no finished item's record; remove it, or start again in an empty directory");
    }
    fs::remove(fs::path(dir) / name);  // a finished shard of an item the interrupted run did not finish
    ++removed;
  }
  remove_temporaries(dir);
  st.complete = l.index && static_cast<int64_t>(st.done.size()) == now.items;
  log << "[data] resuming " << dir << ": " << st.done.size() << " of " << now.items << " item(s) finished"
      << (removed ? ", " + std::to_string(removed) + " shard(s) of unfinished items removed" : "") << "\n";
  return st;
}

}  // namespace

OutputState prepare_output(const std::string& dir, const RunManifest& now, const std::vector<WorkItem>& items,
                           bool resume, std::ostream& log) {
  DirListing l = list_dir(dir);
  const bool leftovers = l.index || l.manifest || !l.shards.empty();
  if (!leftovers) {
    start_fresh(dir, now);
    return {};
  }
  if (!resume) {
    if (l.manifest && !l.index) {
      throw Error("shard directory " + dir + " holds an interrupted run (" + kManifestFile +
                  ", no index.json): rerun with --resume to continue it, or choose an empty directory");
    }
    std::string what = l.index ? format::kIndexFile : l.shards.empty() ? kManifestFile : l.shards.front();
    throw Error("shard directory " + dir + " already holds a shard set (" + what +
                "); choose an empty directory or remove the old set (an interrupted run continues with --resume)");
  }
  if (!l.manifest) {
    throw Error("cannot resume " + dir + ": it holds shards but no " + kManifestFile +
                " (not written by a resumable run); choose an empty directory or remove the old set");
  }
  return resume_from(dir, l, now, items, log);
}

}  // namespace ftune::data
