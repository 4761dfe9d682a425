#include "data/pipeline/work_plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <queue>
#include <utility>

#include "common/error.h"

namespace ftune::data {

std::vector<InputFile> describe_inputs(const std::vector<std::string>& files, bool txt_as_file) {
  std::vector<InputFile> out;
  std::map<std::pair<dev_t, ino_t>, std::string> seen;  // by identity: two spellings of one file
  for (const auto& path : files) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) throw Error("cannot stat input " + path + ": " + std::strerror(errno));
    auto [it, fresh] = seen.emplace(std::make_pair(st.st_dev, st.st_ino), path);
    if (!fresh) {
      throw Error("input " + path + " is listed twice (also as " + it->second +
                  "); its documents would be in the set twice: list each file once");
    }
    InputFile f;
    f.path = path;
    f.bytes = static_cast<uint64_t>(st.st_size);
    f.splittable = compression_of(path) == Compression::kNone && !(txt_as_file && input_kind_of(path) == InputKind::kText);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<WorkItem> plan_items(const std::vector<InputFile>& inputs, uint64_t item_bytes) {
  FTUNE_CHECK(item_bytes > 0, "item_bytes must be positive");
  std::vector<WorkItem> items;
  for (size_t f = 0; f < inputs.size(); ++f) {
    const InputFile& in = inputs[f];
    if (!in.splittable || in.bytes <= item_bytes) {
      WorkItem w;
      w.index = static_cast<int64_t>(items.size());
      w.file = static_cast<int64_t>(f);
      w.bytes = in.bytes;
      items.push_back(w);
      continue;
    }
    for (uint64_t begin = 0; begin < in.bytes; begin += item_bytes) {
      WorkItem w;
      w.index = static_cast<int64_t>(items.size());
      w.file = static_cast<int64_t>(f);
      w.range.begin = begin;
      // The last range is open-ended: a file that grew would otherwise lose its tail silently
      // (the manifest's sizes catch it on resume).
      w.range.end = begin + item_bytes >= in.bytes ? UINT64_MAX : begin + item_bytes;
      w.bytes = std::min(item_bytes, in.bytes - begin);
      items.push_back(w);
    }
  }
  return items;
}

std::vector<std::vector<int64_t>> assign_items(const std::vector<WorkItem>& items, const std::set<int64_t>& todo,
                                               int ranks) {
  std::vector<const WorkItem*> order;
  for (int64_t i : todo) order.push_back(&items.at(static_cast<size_t>(i)));
  std::stable_sort(order.begin(), order.end(), [](const WorkItem* a, const WorkItem* b) { return a->bytes > b->bytes; });
  using Load = std::pair<uint64_t, int>;  // (bytes so far, rank): the least loaded, lowest rank first
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> loads;
  for (int r = 0; r < ranks; ++r) loads.push({0, r});
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(ranks));
  for (const WorkItem* w : order) {
    Load l = loads.top();
    loads.pop();
    out[static_cast<size_t>(l.second)].push_back(w->index);
    loads.push({l.first + std::max<uint64_t>(w->bytes, 1), l.second});
  }
  for (auto& v : out) std::sort(v.begin(), v.end());
  return out;
}

std::string describe_item(const WorkItem& item, const std::vector<InputFile>& inputs) {
  const std::string& path = inputs.at(static_cast<size_t>(item.file)).path;
  if (item.whole()) return path + " (whole file)";
  std::string end = item.range.end == UINT64_MAX ? "end" : std::to_string(item.range.end);
  return path + " bytes " + std::to_string(item.range.begin) + ".." + end;
}

}  // namespace ftune::data
