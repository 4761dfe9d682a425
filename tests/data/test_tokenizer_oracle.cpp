// ftune's tokenizer against the `tokenizers` library: the oracle script trains byte-level and
// SentencePiece-style BPE tokenizers (and converts a real sentencepiece model through
// transformers), encodes and decodes a multi-script corpus, and we must agree on every id
// and every decoded string.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "data/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

using nlohmann::json;

const char* const kKinds[] = {"llama3", "gpt2", "roberta", "spm_bpe", "spm_legacy", "spm_hf"};

std::string corpus_path() { return test::source_dir() + "/tests/data/fixtures/tok_corpus.jsonl"; }

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

// Builds all oracle tokenizers and expectations once for the suite.
class TokenizerOracle : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>();
    auto made = test::run_oracle("tok_oracle.py", "make " + dir_->path() + " " + corpus_path());
    ASSERT_EQ(made.exit_code, 0) << made.output;
    for (const char* kind : kKinds) {
      std::string d = dir_->file(kind);
      auto r = test::run_oracle("tok_oracle.py", "expect " + d + " " + corpus_path() + " " + d + "/expect.jsonl");
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() { dir_.reset(); }
  static std::unique_ptr<test::TempDir> dir_;
};
std::unique_ptr<test::TempDir> TokenizerOracle::dir_;

TEST_P(TokenizerOracle, IdsAndDecodeMatchTokenizers) {
  const std::string d = dir_->file(GetParam());
  auto tok = Tokenizer::load(d);
  auto corpus = read_jsonl(corpus_path());
  auto expect = read_jsonl(d + "/expect.jsonl");
  ASSERT_EQ(corpus.size(), expect.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i]["text"];
    SCOPED_TRACE("corpus line " + std::to_string(i + 1) + ": " + json(text).dump());
    auto ids = tok->encode(text, false);
    auto ids_special = tok->encode(text, true);
    EXPECT_EQ(ids, expect[i]["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(ids_special, expect[i]["ids_special"].get<std::vector<int32_t>>());
    auto want = expect[i]["ids_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->decode(want, false), expect[i]["decoded"].get<std::string>());
    EXPECT_EQ(tok->decode(want, true), expect[i]["decoded_skip"].get<std::string>());
  }
}

TEST_P(TokenizerOracle, ConfigTokensAndHash) {
  auto tok = Tokenizer::load(dir_->file(GetParam()) + "/tokenizer.json");
  EXPECT_EQ(tok->hash().size(), 64u);
  EXPECT_GT(tok->vocab_size(), 256);
  if (tok->bos_id()) {
    EXPECT_EQ(tok->id_to_token(*tok->bos_id()), tok->bos_token());
    EXPECT_TRUE(tok->is_special(*tok->bos_id()));
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, TokenizerOracle, ::testing::Values("llama3", "gpt2", "roberta", "spm_bpe", "spm_legacy", "spm_hf"));

}  // namespace
}  // namespace ftune::data
