// Tokenizer unit tests on small hand-written tokenizer.json files: merges in both JSON forms,
// thread safety, and the errors for unsupported or malformed files and bad ids.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/error.h"
#include "common/sha256.h"
#include "data/pipeline/encode.h"
#include "data/tokenizer/tokenizer.h"
#include "tests/data/tiny_tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

using nlohmann::json;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::string write_json(const test::TempDir& dir, const json& j, const std::string& name = "tokenizer.json") {
  test::write_file(dir.file(name), j.dump());
  return dir.file(name);
}

// The ftune::Error message of loading `j`, or "" when it loads.
std::string load_error(const json& j) {
  test::TempDir dir;
  try {
    Tokenizer::load(write_json(dir, j));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, TinyByteLevelMergesInBothJsonForms) {
  test::TempDir dir;
  for (bool pairs : {false, true}) {
    auto tok = Tokenizer::load(write_json(dir, tiny_byte_level(pairs)));
    const int32_t t = *tok->token_to_id("t"), he = 96, the = 97;
    EXPECT_EQ(tok->encode("the the", false), (std::vector<int32_t>{t, he, the}));
    EXPECT_EQ(tok->encode("the<|eot|> the", false), (std::vector<int32_t>{t, he, 98, the}));
    EXPECT_EQ(tok->decode({t, he, 98, the}, false), "the<|eot|> the");
    EXPECT_EQ(tok->decode({t, he, 98, the}, true), "the the");
    EXPECT_EQ(tok->vocab_size(), 99);
    EXPECT_TRUE(tok->is_special(98));
    EXPECT_EQ(tok->hash().size(), 64u);
  }
}

TEST(Tokenizer, LoadsFromDirectoryWithConfig) {
  test::TempDir dir;
  write_json(dir, tiny_byte_level(false));
  write_json(dir, {{"bos_token", {{"content", "<|eot|>"}}}, {"eos_token", "<|eot|>"}, {"chat_template", "{{ x }}"}},
             "tokenizer_config.json");
  auto tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok->path(), dir.file("tokenizer.json"));
  EXPECT_EQ(tok->bos_id(), 98);
  EXPECT_EQ(tok->eos_token(), "<|eot|>");
  EXPECT_EQ(tok->chat_template(), "{{ x }}");
  EXPECT_EQ(tok->pad_id(), std::nullopt);
  EXPECT_EQ(tok->hash(), sha256_hex(test::read_file(dir.file("tokenizer.json"))));
  EXPECT_EQ(tok->encode("the", true), tok->encode("the", false));  // no post-processor, no add_bos
}

// With no post_processor in tokenizer.json, add_bos_token/add_eos_token from the config apply
// (as transformers does); with one, the post-processor alone decides (as tokenizers does).
TEST(Tokenizer, ConfigAddBosOnlyWithoutPostProcessor) {
  test::TempDir dir;
  json j = tiny_byte_level(false);
  write_json(dir, j);
  write_json(dir, {{"bos_token", "<|eot|>"}, {"eos_token", "<|eot|>"}, {"add_bos_token", true}, {"add_eos_token", true}},
             "tokenizer_config.json");
  const int32_t t = *Tokenizer::load(dir.path())->token_to_id("t");
  EXPECT_EQ(Tokenizer::load(dir.path())->encode("the", true), (std::vector<int32_t>{98, t, 96, 98}));
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", true}};
  write_json(dir, j);
  EXPECT_EQ(Tokenizer::load(dir.path())->encode("the", true), (std::vector<int32_t>{t, 96}));
}

TEST(Tokenizer, EncodesTheSameFromManyThreads) {
  test::TempDir dir;
  auto tok = Tokenizer::load(write_json(dir, tiny_byte_level(false)));
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "the " + std::to_string(i) + " theme<|eot|>  ";
  const auto want = tok->encode(text, true);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k) {
    threads.emplace_back([&, k] { for (int r = 0; r < 3; ++r) got[k] = tok->encode(text, true); });
  }
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(TokenizerErrors, UnsupportedModelTypes) {
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    json j = tiny_byte_level(false);
    j["model"] = {{"type", type}, {"vocab", json::object()}};
    std::string msg = load_error(j);
    EXPECT_NE(msg.find("tokenizer.json: model: type \"" + std::string(type) + "\" is not supported"), std::string::npos) << msg;
    EXPECT_NE(msg.find("BPE"), std::string::npos) << msg;
  }
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamed) {
  json j = tiny_byte_level(false);
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "BertNormalizer"}}})}};
  EXPECT_NE(load_error(j).find("normalizer: type \"BertNormalizer\" is not supported (supported: "), std::string::npos);
  j = tiny_byte_level(false);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_NE(load_error(j).find("pre_tokenizer: type \"Whitespace\""), std::string::npos);
  j = tiny_byte_level(false);
  j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}};
  EXPECT_NE(load_error(j).find("decoder: type \"WordPiece\""), std::string::npos);
  j = tiny_byte_level(false);
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(load_error(j).find("dropout"), std::string::npos);
  j = tiny_byte_level(false);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_NE(load_error(j).find("pre_tokenizer Split: regex /(unclosed/ does not compile"), std::string::npos) << load_error(j);
}

TEST(TokenizerErrors, MalformedFiles) {
  test::TempDir dir;
  test::write_file(dir.file("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
  try {
    Tokenizer::load(dir.path());
    FAIL() << "malformed JSON loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("tokenizer.json") + ": not valid JSON"), std::string::npos) << e.what();
  }
  json j = tiny_byte_level(false);
  j["model"].erase("vocab");
  EXPECT_NE(load_error(j).find("malformed tokenizer.json"), std::string::npos) << load_error(j);
  j = tiny_byte_level(false);
  j["model"]["merges"].push_back("x q");  // "xq" is not in the vocabulary
  EXPECT_NE(load_error(j).find("merge \"x q\" makes \"xq\", which is not in the vocabulary"), std::string::npos) << load_error(j);
  EXPECT_NE(load_error({{"version", "1.0"}}).find("no \"model\""), std::string::npos);
  try {
    Tokenizer::load(dir.file("missing/tokenizer.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no such tokenizer file"), std::string::npos);
  }
}

// Found by scripts/fuzz.sh tokenizer: each escaped as a non-ftune exception (an "internal
// error"), undefined behaviour, or a multi-gigabyte allocation.
TEST(TokenizerErrors, FuzzerFindingsAreClearErrors) {
  json j = tiny_byte_level(false);
  j["model"]["unk_token"] = "<unk>";  // not in the vocabulary: fails once a text needs it
  auto tok = Tokenizer::from_json(j.dump(), nullptr, "fz/tokenizer.json");
  try {
    tok->encode("\xC3\xA9", false);
    FAIL() << "encoded with a missing unk token";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fz/tokenizer.json: unk_token \"<unk>\" is not in the vocabulary"),
              std::string::npos) << e.what();
  }
  j = tiny_byte_level(false);
  j["model"]["vocab"]["!"] = 2.3e30;  // get<int32_t>() of it was undefined behaviour
  EXPECT_NE(load_error(j).find("model vocab \"!\": expected an integer, got 2.3e+30"), std::string::npos) << load_error(j);
  j = tiny_byte_level(false);
  j["model"]["vocab"]["!"] = 2147483647;  // sized tables by the largest id: 64 GB
  EXPECT_NE(load_error(j).find("vocab id 2147483647 is far past the 98 tokens"), std::string::npos) << load_error(j);
  j = tiny_byte_level(false);
  j["added_tokens"][0]["id"] = 2000000000;
  EXPECT_NE(load_error(j).find("added_tokens: id 2000000000 of \"<|eot|>\" is far past the vocabulary"), std::string::npos)
      << load_error(j);
  j = tiny_byte_level(false);
  j["added_tokens"][0]["id"] = 99;  // id 98 is now a hole that decode would refuse
  j["post_processor"] = {{"type", "RobertaProcessing"}, {"cls", {"<s>", 98}}, {"sep", {"</s>", 99}}};
  EXPECT_NE(load_error(j).find("post_processor: special token id 98 is not a token of the vocabulary"), std::string::npos)
      << load_error(j);
  j = tiny_byte_level(false);
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  EXPECT_NE(load_error(j).find("decoder Strip start: -1 is out of range"), std::string::npos) << load_error(j);
  // tokenizer_config.json fields of the wrong type name the config file.
  j = tiny_byte_level(false);
  const std::string cfg = R"({"bos_token": {"content": 5}})";
  try {
    Tokenizer::from_json(j.dump(), &cfg, "fz/tokenizer.json");
    FAIL() << "loaded a config with a numeric bos_token";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fz/tokenizer.json (tokenizer_config.json): malformed tokenizer_config.json"),
              std::string::npos) << e.what();
  }
  const std::string list = "[1]";
  try {
    Tokenizer::from_json(j.dump(), &list, "fz/tokenizer.json");
    FAIL() << "loaded a config that is a list";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the top level is a JSON array, expected an object"), std::string::npos) << e.what();
  }
}

// A vocabulary token that looks like a byte-fallback piece but is not hex ("<0xZZ>") ended
// `ftune data tokenize` with std::invalid_argument from std::stoi ("internal error").
TEST(TokenizerErrors, TokenBytesTakesNonHexByteLookalikesAsText) {
  json j = tiny_byte_level(false);
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = {{"type", "Sequence"}, {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
  j["model"]["vocab"]["<0xZZ>"] = 99;
  j["model"]["vocab"]["<0x41>"] = 100;
  test::TempDir dir;
  auto tok = Tokenizer::load(write_json(dir, j));
  TokenBytes bytes(*tok);
  ASSERT_TRUE(bytes.usable());
  EXPECT_EQ(bytes[99], "<0xZZ>");
  EXPECT_EQ(bytes[100], "A");
}

// The chat template beside the config (transformers >= 4.50): chat_template.jinja, else
// chat_template.json; read only when tokenizer_config.json has none.
TEST(Tokenizer, ChatTemplateFilesBesideTheConfig) {
  test::TempDir dir;
  write_json(dir, tiny_byte_level(false));
  write_json(dir, {{"chat_template", "{{ x }}"}}, "chat_template.json");
  EXPECT_EQ(Tokenizer::load(dir.path())->chat_template(), "{{ x }}");
  test::write_file(dir.file("chat_template.jinja"), "{{ y }}");
  EXPECT_EQ(Tokenizer::load(dir.path())->chat_template(), "{{ y }}");
  std::remove(dir.file("chat_template.jinja").c_str());
  test::write_file(dir.file("chat_template.json"), "{oops");
  try {
    Tokenizer::load(dir.path());
    FAIL() << "a broken chat_template.json loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("chat_template.json") + ": not valid JSON"), std::string::npos)
        << e.what();
  }
  write_json(dir, {{"chat_template", "{{ z }}"}}, "tokenizer_config.json");  // the config's wins
  EXPECT_EQ(Tokenizer::load(dir.path())->chat_template(), "{{ z }}");
}

TEST(TokenizerErrors, DecodeIdOutOfRangeAndBadUtf8) {
  test::TempDir dir;
  auto tok = Tokenizer::load(write_json(dir, tiny_byte_level(false)));
  for (int32_t bad : {99, -1, 1 << 30}) {
    try {
      tok->decode({1, bad}, false);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("token id " + std::to_string(bad) + " at position 1 is out of range"),
                std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("vocabulary size 99"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(tok->encode("ok \xC3(", false), Error);
}

}  // namespace
}  // namespace ftune::data
