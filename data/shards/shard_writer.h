// Writes a set of HDF5 token shards (layout: data/FORMAT.md). Documents are appended in order;
// a shard is closed once it holds `tokens_per_shard` tokens, written under a temporary name and
// renamed into place, so an interrupted run never leaves a half-written shard behind. `finish`
// writes the index file that describes the set.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/shards/shard_index.h"

namespace ftune::data {

// What every shard of a set records about where its tokens came from.
struct ShardSetInfo {
  std::string tokenizer_hash;  // SHA-256 of tokenizer.json (Tokenizer::hash())
  int64_t vocab_size = 0;      // decides uint16 vs uint32 tokens
  int64_t bos_id = -1;         // -1: none
  int64_t eos_id = -1;
  std::vector<std::string> source_files;
  std::string tool_version;
  bool with_loss_mask = false;  // write the per-token loss-mask dataset
};

struct ShardSetStats {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t masked_tokens = 0;  // tokens with loss mask 0
  int64_t shards = 0;
};

class ShardSetWriter {
 public:
  ShardSetWriter(const std::string& dir, ShardSetInfo info, int64_t tokens_per_shard);
  // One part of a set (a work item of `ftune data tokenize`): shards are named name(0),
  // name(1), ...; the directory is neither checked nor cleared and no index is written: the
  // caller collects close_part()'s entries and writes the index once every part is done.
  using ShardNamer = std::function<std::string(int64_t piece)>;
  ShardSetWriter(const std::string& dir, ShardSetInfo info, int64_t tokens_per_shard, ShardNamer name);
  ~ShardSetWriter();  // without finish()/close_part(): removes the temporary shard, keeps finished ones

  // `mask` is null (all tokens trained on) or has n entries of 0/1.
  void add_document(const int32_t* ids, size_t n, const uint8_t* mask);
  ShardSetStats finish();
  // Closes the last shard of a part and returns the part's shards in order.
  std::vector<ShardIndexEntry> close_part();
  // Removes the temporary shard and the shards this writer finished (an abandoned part).
  void discard_part();
  const ShardSetStats& stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// index.json's contents for a set of shards (in order) written with `info`.
ShardIndex make_shard_index(const ShardSetInfo& info, const std::vector<ShardIndexEntry>& shards);

}  // namespace ftune::data
