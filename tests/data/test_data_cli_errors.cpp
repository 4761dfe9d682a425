// Bad input files through the ftune binary end as a clear message and the user-error exit code
// (1), never "internal error" (3): regressions from the fuzzers and mutation runs, each with a
// hand-written tokenizer so that no Python is needed.
#include <gtest/gtest.h>

#include "tests/data/tiny_tokenizer.h"
#include "tests/support/test_support.h"

namespace ftune::data {
namespace {

class DataCliErrors : public ::testing::Test {
 protected:
  void SetUp() override { test::write_file(dir_.file("tokenizer.json"), tiny_byte_level(false).dump()); }
  void write_config(const nlohmann::json& cfg) { test::write_file(dir_.file("tokenizer_config.json"), cfg.dump()); }
  test::ProcessResult tokenize_chat(const std::string& line) {
    test::write_file(dir_.file("chat.jsonl"), line + "\n");
    return test::run_ftune("data tokenize --format chat --inputs " + dir_.file("chat.jsonl") + " --output " +
                           dir_.file("out") + " --tokenizer " + dir_.path() + " 2>&1");
  }
  test::TempDir dir_;
};

const char* const kChat = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the"}]})";

// A mutation run found this one: std::stoll threw past the parser and the run ended as
// "internal error: stoll" with exit code 3.
TEST_F(DataCliErrors, ChatTemplateIntegerLiteralOutOfRangeNamesTheTemplatePosition) {
  write_config({{"eos_token", "<|eot|>"},
                {"chat_template", "{% for message in messages %}\n{{ message['role'-9223372036854775808] }}{% endfor %}"}});
  auto r = tokenize_chat(kChat);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokenizer chat template:2:19: integer literal 9223372036854775808 is out of range"),
            std::string::npos) << r.output;
}

TEST_F(DataCliErrors, ChatTemplateFloatLiteralOutOfRange) {
  write_config({{"chat_template", "{{ 1" + std::string(400, '0') + ".0 }}"}});
  auto r = tokenize_chat(kChat);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("tokenizer chat template:1:4: float literal 1000"), std::string::npos) << r.output;
}

// Integer overflow while rendering fails the record (a template error), as raise_exception does.
TEST_F(DataCliErrors, ChatTemplateOverflowIsATemplateErrorOfTheLine) {
  write_config({{"chat_template", "{% for m in messages %}{{ m.content }}{{ 9223372036854775807 + loop.index }}{% endfor %}"}});
  auto r = tokenize_chat(kChat);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir_.file("chat.jsonl") + ":1:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("integer overflow in 9223372036854775807 + 1"), std::string::npos) << r.output;
}

// Found by scripts/fuzz.sh tokenizer: encode threw std::invalid_argument ("internal error").
TEST_F(DataCliErrors, UnkTokenMissingFromTheVocabularyNamesTheFile) {
  nlohmann::json j = tiny_byte_level(false);
  j["model"]["unk_token"] = "<unk>";
  test::write_file(dir_.file("tokenizer.json"), j.dump());
  test::write_file(dir_.file("in.jsonl"), "{\"text\": \"caf\\u00e9\"}\n");
  auto r = test::run_ftune("data encode --tokenizer " + dir_.path() + " " + dir_.file("in.jsonl") + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir_.file("tokenizer.json") + ": unk_token \"<unk>\" is not in the vocabulary"),
            std::string::npos) << r.output;
}

// `{"ids": [4294967301]}` was cast to int32 and decoded as id 5.
TEST_F(DataCliErrors, DecodeRefusesIdsPastInt32) {
  test::write_file(dir_.file("ids.jsonl"), "{\"ids\": [4294967301]}\n");
  auto r = test::run_ftune("data decode --tokenizer " + dir_.path() + " " + dir_.file("ids.jsonl") + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(":1: ids must be integers in the int32 range, got 4294967301"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::data
