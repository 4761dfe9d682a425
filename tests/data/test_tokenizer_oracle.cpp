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

std::string corpus_path() { return test::source_dir() + "/tests/data/fixtures/tok_corpus.jsonl"; }

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

// Each test runs in its own process (gtest_discover_tests), so each builds only its own kind.
class TokenizerOracle : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<test::TempDir>();
    auto r = test::run_oracle("tok_oracle.py", "prepare " + dir_->path() + " " + corpus_path() + " " + GetParam());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::unique_ptr<test::TempDir> dir_;
};


// Compares encode (with and without special tokens) and decode (with and without skipping
// special tokens) on every line; reports at most a few lines in full.
void expect_agreement(const Tokenizer& tok, const std::string& corpus_file, const std::string& expect_file) {
  auto corpus = read_jsonl(corpus_file);
  auto expect = read_jsonl(expect_file);
  ASSERT_EQ(corpus.size(), expect.size());
  int failures = 0;
  for (size_t i = 0; i < corpus.size() && failures < 5; ++i) {
    const std::string text = corpus[i]["text"];
    SCOPED_TRACE(corpus_file + " line " + std::to_string(i + 1) + ": " + json(text).dump());
    const auto want = expect[i]["ids_special"].get<std::vector<int32_t>>();
    bool ok = tok.encode(text, false) == expect[i]["ids"].get<std::vector<int32_t>>() &&
              tok.encode(text, true) == want &&
              tok.decode(want, false) == expect[i]["decoded"].get<std::string>() &&
              tok.decode(want, true) == expect[i]["decoded_skip"].get<std::string>();
    if (ok) continue;
    ++failures;
    EXPECT_EQ(tok.encode(text, false), expect[i]["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.encode(text, true), want);
    EXPECT_EQ(tok.decode(want, false), expect[i]["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(want, true), expect[i]["decoded_skip"].get<std::string>());
  }
}

TEST_P(TokenizerOracle, IdsAndDecodeMatchTokenizers) {
  const std::string d = dir_->file(GetParam());
  auto tok = Tokenizer::load(d);
  expect_agreement(*tok, corpus_path(), d + "/expect.jsonl");
}

TEST_P(TokenizerOracle, FuzzCorpusMatchesTokenizers) {
  const std::string d = dir_->file(GetParam());
  auto tok = Tokenizer::load(d);
  expect_agreement(*tok, dir_->file("fuzz.jsonl"), d + "/fuzz_expect.jsonl");
}

// `ftune data encode --add-special-tokens` prints the oracle's ids, and decode its text.
TEST_P(TokenizerOracle, DataEncodeCommandMatchesTokenizers) {
  const std::string d = dir_->file(GetParam());
  auto enc = test::run_ftune("data encode --add-special-tokens --tokenizer " + d + " " + corpus_path());
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  test::write_file(d + "/ids.jsonl", enc.output);
  auto dec = test::run_ftune("data decode --tokenizer " + d + " " + d + "/ids.jsonl");
  ASSERT_EQ(dec.exit_code, 0) << dec.output;
  test::write_file(d + "/text.jsonl", dec.output);
  auto ids = read_jsonl(d + "/ids.jsonl");
  auto texts = read_jsonl(d + "/text.jsonl");
  auto expect = read_jsonl(d + "/expect.jsonl");
  ASSERT_EQ(ids.size(), expect.size());
  ASSERT_EQ(texts.size(), expect.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    EXPECT_EQ(ids[i]["ids"], expect[i]["ids_special"]) << "line " << i + 1;
    EXPECT_EQ(texts[i]["text"], expect[i]["decoded"]) << "line " << i + 1;
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

INSTANTIATE_TEST_SUITE_P(Kinds, TokenizerOracle, ::testing::Values("llama3", "gpt2", "roberta", "spm_bpe", "spm_legacy", "spm_hf", "qwen2",
                                          "bpe_affixes"));

}  // namespace
}  // namespace ftune::data
