// h5py reads shards written by ShardSetWriter and finds the layout of data/FORMAT.md and the
// tokens, masks and attributes that were written (tests/oracle/shards_layout.py).
#include "tests/data/shard_fixtures.h"
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ftune::test {
namespace {

// A shard closes after the document that brings it to `per_shard` tokens.
int64_t expected_shards(const std::vector<Doc>& docs, int64_t per_shard) {
  int64_t shards = 0, in_shard = 0;
  for (const auto& d : docs) {
    in_shard += static_cast<int64_t>(d.ids.size());
    if (in_shard >= per_shard) shards += 1, in_shard = 0;
  }
  return shards + (in_shard > 0 ? 1 : 0);
}

void run_layout_oracle(const std::vector<Doc>& docs, const data::ShardSetInfo& info,
                       int64_t tokens_per_shard, int64_t want_shards) {
  TempDir tmp;
  auto stats = write_set(tmp.file("set"), docs, info, tokens_per_shard);
  EXPECT_EQ(stats.shards, want_shards);
  nlohmann::json exp = {{"tokenizer_hash", info.tokenizer_hash}, {"vocab_size", info.vocab_size},
                        {"bos_id", info.bos_id}, {"eos_id", info.eos_id},
                        {"source_files", info.source_files}, {"tool_version", info.tool_version},
                        {"with_loss_mask", info.with_loss_mask}};
  nlohmann::json jdocs = nlohmann::json::array(), jmasks = nlohmann::json::array();
  for (const auto& d : docs) {
    jdocs.push_back(d.ids);
    jmasks.push_back(d.mask.empty() ? nlohmann::json() : nlohmann::json(d.mask));
  }
  exp["documents"] = jdocs;
  exp["masks"] = jmasks;
  write_file(tmp.file("expected.json"), exp.dump());
  auto r = run_oracle("shards_layout.py", shell_quote(tmp.file("set")) + " " + shell_quote(tmp.file("expected.json")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK"), std::string::npos) << r.output;
}

TEST(ShardLayoutOracle, Uint16TokensWithMaskAcrossShards) {
  auto docs = make_docs(7, 300, 200, 32000, true);
  // ~30k tokens at 4096 per shard: several shards, documents never split.
  run_layout_oracle(docs, test_info(32000, true), 4096, expected_shards(docs, 4096));
}

TEST(ShardLayoutOracle, Uint32TokensForLargeVocabulary) {
  auto docs = make_docs(8, 50, 100, 128256, false);
  for (auto& d : docs) d.ids.back() = 128255;  // above uint16
  run_layout_oracle(docs, test_info(128256, false), 1 << 20, 1);
}

}  // namespace
}  // namespace ftune::test
