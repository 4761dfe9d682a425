// Writes a set of HDF5 token shards (layout: data/FORMAT.md). Documents are appended in order;
// a shard is closed once it holds `tokens_per_shard` tokens, written under a temporary name and
// renamed into place, so an interrupted run never leaves a half-written shard behind. `finish`
// writes the index file that describes the set.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
  ~ShardSetWriter();  // without finish(): removes the temporary shard, keeps finished ones

  // `mask` is null (all tokens trained on) or has n entries of 0/1.
  void add_document(const int32_t* ids, size_t n, const uint8_t* mask);
  ShardSetStats finish();
  const ShardSetStats& stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftune::data
