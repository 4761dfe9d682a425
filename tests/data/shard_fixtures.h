// Synthetic documents and shard sets for the shard and reader tests.
#pragma once

#include "data/shards/shard_writer.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ftune::test {

struct Doc {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // empty: no mask given (all trained on)
};

// `n` documents of length 1..max_len with ids < vocab; every third document gets a mask that
// hides its first quarter (a prompt), when `with_mask`.
inline std::vector<Doc> make_docs(uint32_t seed, int n, int max_len, int64_t vocab, bool with_mask) {
  std::mt19937 rng(seed);
  std::vector<Doc> docs(n);
  for (int d = 0; d < n; ++d) {
    int len = 1 + static_cast<int>(rng() % static_cast<uint32_t>(max_len));
    for (int i = 0; i < len; ++i) docs[d].ids.push_back(static_cast<int32_t>(rng() % vocab));
    if (with_mask && d % 3 == 0) {
      for (int i = 0; i < len; ++i) docs[d].mask.push_back(i < len / 4 ? 0 : 1);
    }
  }
  return docs;
}

inline data::ShardSetInfo test_info(int64_t vocab, bool with_mask, const std::string& hash = "h-test") {
  data::ShardSetInfo info;
  info.tokenizer_hash = hash;
  info.vocab_size = vocab;
  info.bos_id = 1;
  info.eos_id = 2;
  info.source_files = {"corpus/a.jsonl", "corpus/b.jsonl"};
  info.tool_version = "ftune-test";
  info.with_loss_mask = with_mask;
  return info;
}

inline data::ShardSetStats write_set(const std::string& dir, const std::vector<Doc>& docs,
                                     const data::ShardSetInfo& info, int64_t tokens_per_shard) {
  data::ShardSetWriter w(dir, info, tokens_per_shard);
  for (const auto& d : docs) w.add_document(d.ids.data(), d.ids.size(), d.mask.empty() ? nullptr : d.mask.data());
  return w.finish();
}

}  // namespace ftune::test
