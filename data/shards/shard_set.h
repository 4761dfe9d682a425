// Read side of a token shard set (layout: data/FORMAT.md). `open` reads index.json and every
// shard's attributes and document offsets, checks them against each other and against the
// run's tokenizer, and fails with a message naming the shard. Token reads are by range, so a
// reader can cut windows anywhere without loading a shard.
#pragma once

#include "data/shards/shard_index.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ftune::data {

// What one shard file says about itself (its attributes and dataset shapes).
struct ShardMeta {
  std::string path;  // full path of the file
  std::string file;  // name within the set's directory
  int64_t format_version = 0;
  std::string tokenizer_hash;
  int64_t vocab_size = 0;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  std::vector<std::string> source_files;
  std::string tool_version;
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t masked_tokens = 0;
  bool has_loss_mask = false;
  std::string token_dtype;           // "uint16" | "uint32"
  std::vector<int64_t> doc_offsets;  // [documents + 1], checked: 0, non-decreasing, == tokens
};

// Reads and checks one shard's attributes, dataset shapes and offsets (not every token).
// Throws ftune::Error naming the file.
ShardMeta read_shard_meta(const std::string& path);

// "" when the shard agrees with its index entry and the set's header, else what differs.
std::string index_mismatch(const ShardMeta& m, const ShardIndexEntry& entry, const ShardIndex& index);

class ShardSet {
 public:
  // Throws ftune::Error for a missing directory or index, a missing, truncated or corrupt shard,
  // or a shard whose tokenizer hash differs from `expected_tokenizer_hash` (or, without one,
  // from index.json's); the message names the shard and both hashes.
  static std::shared_ptr<const ShardSet> open(
      const std::string& dir, const std::optional<std::string>& expected_tokenizer_hash = std::nullopt);
  ~ShardSet();
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;

  const std::string& dir() const;
  const ShardIndex& index() const;
  int64_t shard_count() const;
  const ShardMeta& shard(int64_t i) const;
  int64_t documents() const;  // in the whole set
  int64_t tokens() const;
  bool has_loss_mask() const;

  // A document by its global index (shards in index order, documents in file order).
  struct DocRef {
    int64_t shard = 0;
    int64_t begin = 0;   // [tokens] offset within the shard
    int64_t length = 0;  // [tokens]
  };
  DocRef document(int64_t global_doc) const;

  // Tokens [begin, begin + count) of a shard, widened to int32. Thread-safe.
  void read_tokens(int64_t shard, int64_t begin, int64_t count, int32_t* out) const;
  // Loss mask of the same range; all ones for a set without a mask. Thread-safe.
  void read_mask(int64_t shard, int64_t begin, int64_t count, uint8_t* out) const;

  struct Impl;

 private:
  explicit ShardSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftune::data
