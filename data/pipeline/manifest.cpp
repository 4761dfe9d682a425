#include "data/pipeline/manifest.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace ftune::data {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr int64_t kManifestVersion = 1;

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// JSON has no uint64 above 2^63 in nlohmann's signed path; UINT64_MAX ("to the end") is null.
Json range_end(uint64_t end) { return end == UINT64_MAX ? Json(nullptr) : Json(end); }
uint64_t range_end(const Json& j) { return j.is_null() ? UINT64_MAX : j.get<uint64_t>(); }

Json shards_json(const std::vector<ShardIndexEntry>& shards) {
  Json a = Json::array();
  for (const auto& s : shards) {
    a.push_back({{"file", s.file}, {"documents", s.documents}, {"tokens", s.tokens}, {"masked_tokens", s.masked_tokens}});
  }
  return a;
}

}  // namespace

void RunManifest::write(const std::string& dir) const {
  Json settings_json = Json::object(), inputs_json = Json::array();
  for (const auto& [k, v] : settings) settings_json[k] = v;
  for (const auto& in : inputs) inputs_json.push_back({{"path", in.path}, {"bytes", in.bytes}, {"splittable", in.splittable}});
  Json j = {{"kind", kManifestKind}, {"version", kManifestVersion}, {"tool_version", tool_version},
            {"settings", settings_json}, {"inputs", inputs_json}, {"item_bytes", item_bytes}, {"items", items}};
  write_file_atomically(dir + "/" + kManifestFile, j.dump(2) + "\n");
}

RunManifest RunManifest::read(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFile;
  try {
    Json j = Json::parse(read_whole(path));
    if (j.value("kind", "") != kManifestKind) throw Error(std::string("\"kind\" is not \"") + kManifestKind + "\"");
    if (j.at("version").get<int64_t>() != kManifestVersion) {
      throw Error("manifest version " + std::to_string(j.at("version").get<int64_t>()) + ", this ftune reads " +
                  std::to_string(kManifestVersion));
    }
    RunManifest m;
    m.tool_version = j.value("tool_version", "");
    for (const auto& [k, v] : j.at("settings").items()) m.settings.emplace_back(k, v.get<std::string>());
    for (const auto& in : j.at("inputs")) {
      m.inputs.push_back({in.at("path").get<std::string>(), in.at("bytes").get<uint64_t>(), in.at("splittable").get<bool>()});
    }
    m.item_bytes = j.at("item_bytes").get<uint64_t>();
    m.items = j.at("items").get<int64_t>();
    return m;
  } catch (const Json::exception& e) {
    throw Error(path + " is malformed: " + e.what());
  } catch (const Error& e) {
    throw Error(path + " is malformed: " + e.what());
  }
}

std::string manifest_difference(const RunManifest& then, const RunManifest& now) {
  std::ostringstream os;
  auto value_of = [](const Settings& s, const std::string& key) -> std::string {
    for (const auto& [k, v] : s) if (k == key) return v;
    return "(unset)";
  };
  for (const auto& [k, v] : now.settings) {
    std::string old = value_of(then.settings, k);
    if (old != v) os << "  " << k << ": '" << old << "' when the run began, '" << v << "' now\n";
  }
  if (then.inputs.size() != now.inputs.size()) {
    os << "  inputs: " << then.inputs.size() << " file(s) when the run began, " << now.inputs.size() << " now\n";
  } else {
    for (size_t i = 0; i < now.inputs.size(); ++i) {
      const InputFile &a = then.inputs[i], &b = now.inputs[i];
      if (a.path != b.path) {
        os << "  input " << i + 1 << ": " << a.path << " when the run began, " << b.path << " now\n";
      } else if (a.bytes != b.bytes) {
        os << "  input " << b.path << ": " << a.bytes << " bytes when the run began, " << b.bytes
           << " now (modified since)\n";
      }
    }
  }
  if (then.item_bytes != now.item_bytes) {
    os << "  item_bytes: '" << then.item_bytes << "' when the run began, '" << now.item_bytes << "' now\n";
  }
  return os.str();
}

std::string item_record_name(int64_t item) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "item-%06lld.json", static_cast<long long>(item));
  return buf;
}

std::string ItemRecord::to_json() const {
  Json skipped_json = Json::object(), msgs = Json::array();
  for (int k = 0; k < kNumSkipReasons; ++k) {
    if (skipped[static_cast<size_t>(k)]) skipped_json[skip_reason_name(static_cast<SkipReason>(k))] = skipped[static_cast<size_t>(k)];
  }
  for (const auto& m : messages) msgs.push_back({{"line", m.line}, {"text", m.text}});
  Json j = {{"item", item}, {"file", file}, {"begin", range.begin}, {"end", range_end(range.end)},
            {"lines", lines}, {"records", records}, {"documents", documents}, {"tokens", tokens},
            {"masked_tokens", masked_tokens}, {"truncated", truncated}, {"segment_fallbacks", segment_fallbacks},
            {"skipped", skipped_json}, {"shards", shards_json(shards)}, {"messages", msgs},
            {"rank", rank}, {"host", host}};
  return j.dump();
}

ItemRecord ItemRecord::from_json(const std::string& text, const std::string& where) {
  try {
    Json j = Json::parse(text);
    ItemRecord r;
    r.item = j.at("item").get<int64_t>();
    r.file = j.at("file").get<int64_t>();
    r.range = {j.at("begin").get<uint64_t>(), range_end(j.at("end"))};
    r.lines = j.at("lines").get<int64_t>();
    r.records = j.at("records").get<int64_t>();
    r.documents = j.at("documents").get<int64_t>();
    r.tokens = j.at("tokens").get<int64_t>();
    r.masked_tokens = j.at("masked_tokens").get<int64_t>();
    r.truncated = j.at("truncated").get<int64_t>();
    r.segment_fallbacks = j.at("segment_fallbacks").get<int64_t>();
    for (int k = 0; k < kNumSkipReasons; ++k) {
      r.skipped[static_cast<size_t>(k)] = j.at("skipped").value(skip_reason_name(static_cast<SkipReason>(k)), int64_t{0});
    }
    for (const auto& s : j.at("shards")) {
      r.shards.push_back({s.at("file").get<std::string>(), s.at("documents").get<int64_t>(),
                          s.at("tokens").get<int64_t>(), s.at("masked_tokens").get<int64_t>()});
    }
    for (const auto& m : j.at("messages")) r.messages.push_back({m.at("line").get<int64_t>(), m.at("text").get<std::string>()});
    r.rank = j.value("rank", 0);
    r.host = j.value("host", "");
    return r;
  } catch (const Json::exception& e) {
    throw Error(where + " is malformed: " + e.what());
  }
}

void ItemRecord::write(const std::string& dir) const {
  write_file_atomically(dir + "/" + kItemRecordDir + "/" + item_record_name(item), to_json() + "\n");
}

std::vector<ItemRecord> read_item_records(const std::string& dir) {
  std::vector<ItemRecord> out;
  const fs::path records = fs::path(dir) / kItemRecordDir;
  if (!fs::is_directory(records)) return out;
  for (const auto& entry : fs::directory_iterator(records)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("item-", 0) != 0 || entry.path().extension() != ".json") continue;  // temporaries
    ItemRecord r = ItemRecord::from_json(read_whole(entry.path().string()), entry.path().string());
    if (item_record_name(r.item) != name) {
      throw Error(entry.path().string() + " holds the record of item " + std::to_string(r.item) +
                  ": the manifest does not match its file names");
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const ItemRecord& a, const ItemRecord& b) { return a.item < b.item; });
  return out;
}

}  // namespace ftune::data
