// index.json: the small description of a shard set that readers open first (layout in
// data/FORMAT.md). Written last by ShardSetWriter::finish, so its presence marks a complete set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::data {

struct ShardIndexEntry {
  std::string file;  // relative to the set's directory: "shard-00000.h5"
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t masked_tokens = 0;
};

struct ShardIndex {
  int64_t format_version = 0;
  std::string tokenizer_hash;
  int64_t vocab_size = 0;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  std::string token_dtype;  // "uint16" | "uint32"
  bool has_loss_mask = false;
  std::string tool_version;
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t masked_tokens = 0;
  std::vector<ShardIndexEntry> shards;

  // Throws ftune::Error naming the file when it is missing or malformed.
  static ShardIndex read(const std::string& dir);
  // Atomic: written to a temporary name in `dir`, then renamed over index.json.
  void write(const std::string& dir) const;
};

// Writes `contents` to `path` via a temporary file in the same directory, fsync and rename, so
// readers see either the old file or the complete new one.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace ftune::data
