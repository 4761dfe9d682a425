// The built-in byte-level tokenizer: loads as any tokenizer.json, one id per byte plus BOS,
// exact round trips on any UTF-8, and the `tokenizers` library reads it the same way.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/tokenizer/byte_tokenizer.h"
#include "data/tokenizer/tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

const char* kTexts[] = {"Hello, world", "  tabs\tand\r\nCRLF  ", "héllo 世界 مرحبا नमस्ते 👩‍👩‍👧",
                        "e\u0301 combining", "<|end_of_text|> as text", ""};

std::shared_ptr<const data::Tokenizer> load_byte_tokenizer(const TempDir& dir) {
  write_file(dir.file("tokenizer.json"), data::byte_tokenizer_json());
  write_file(dir.file("tokenizer_config.json"), data::byte_tokenizer_config_json());
  return data::Tokenizer::load(dir.path());
}

TEST(ByteTokenizer, OneIdPerByteAfterBos) {
  TempDir dir;
  auto tok = load_byte_tokenizer(dir);
  EXPECT_EQ(tok->vocab_size(), data::kByteTokenizerVocab);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  for (const char* text : kTexts) {
    std::string s = text;
    auto ids = tok->encode(s, true);
    if (s.find("<|end_of_text|>") != std::string::npos) continue;  // matched as one token
    ASSERT_EQ(ids.size(), s.size() + 1) << s;
    EXPECT_EQ(ids[0], 256);
    for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(ids[i + 1], static_cast<unsigned char>(s[i]));
    EXPECT_EQ(tok->decode(ids, true), s);
  }
}

TEST(ByteTokenizer, TokenizersLibraryAgrees) {
  TempDir dir;
  auto tok = load_byte_tokenizer(dir);
  for (const char* text : kTexts) {
    auto r = run_oracle("tok_encode_decode.py", "encode " + shell_quote(dir.path()) + " " + shell_quote(text));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto expected = nlohmann::json::parse(r.output).get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(text, true), expected) << text;
  }
}

}  // namespace
}  // namespace ftune::test
