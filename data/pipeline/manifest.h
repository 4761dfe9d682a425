// The manifest of a `ftune data tokenize` run, beside its shards: manifest.json (the settings,
// the inputs and the item size the run began with) and one record per finished work item,
// manifest/item-000017.json (its input range, its shards and its counts). A record is written
// atomically after the item's shards are renamed into place, so a record always describes
// shards that exist; `--resume` redoes exactly the items without one, with any rank count.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/pipeline/render.h"
#include "data/pipeline/work_plan.h"
#include "data/shards/shard_index.h"

namespace ftune::data {

constexpr const char* kManifestFile = "manifest.json";
constexpr const char* kManifestKind = "ftune-tokenize-manifest";
constexpr const char* kItemRecordDir = "manifest";
constexpr const char* kLockFile = ".lock";

// What decides the documents: a resume with any of them changed is refused, naming it.
using Settings = std::vector<std::pair<std::string, std::string>>;

struct RunManifest {
  Settings settings;
  std::vector<InputFile> inputs;
  uint64_t item_bytes = 0;  // [bytes]
  int64_t items = 0;
  std::string tool_version;

  void write(const std::string& dir) const;
  static RunManifest read(const std::string& dir);  // throws ftune::Error naming the file
};

// "" when a resumed run `now` continues `then`; otherwise every difference, one per line.
std::string manifest_difference(const RunManifest& then, const RunManifest& now);

struct ItemMessage {
  int64_t line = 0;  // 1-based within the item's range; 0: a whole-file document
  std::string text;  // "<what> [reason]", without the file:line prefix
};

struct ItemRecord {
  int64_t item = 0;
  int64_t file = 0;
  LineRange range;
  int64_t lines = 0;  // lines starting in the range, blank ones included (line number bases)
  int64_t records = 0, documents = 0, tokens = 0, masked_tokens = 0;
  int64_t truncated = 0, segment_fallbacks = 0;
  std::array<int64_t, kNumSkipReasons> skipped{};
  std::vector<ShardIndexEntry> shards;  // in order
  std::vector<ItemMessage> messages;    // the first max_messages skipped records
  int rank = 0;
  std::string host;

  std::string to_json() const;
  static ItemRecord from_json(const std::string& text, const std::string& where);
  void write(const std::string& dir) const;  // atomically, as manifest/item-<index>.json
};

std::string item_record_name(int64_t item);  // "item-000017.json"
// Every record under dir/manifest/, by item; throws ftune::Error naming a malformed one.
std::vector<ItemRecord> read_item_records(const std::string& dir);

}  // namespace ftune::data
