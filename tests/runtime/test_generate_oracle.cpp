// `ftune generate --prompt` end to end against the `tokenizers` library: a tiny Llama-3-like
// tokenizer trained in Python (BOS from its post-processor), copied into a random tiny model by
// `ftune model init --model.tokenizer`.
#include <gtest/gtest.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace ftune::test {
namespace {

using Json = nlohmann::json;

constexpr int kBos = 0;  // <|begin_of_text|>, the tiny tokenizer's first special token

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The oracle's last output line as JSON (anything Python printed before it is noise).
Json oracle_json(const std::string& args) {
  ProcessResult r = run_oracle("tok_encode_decode.py", args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return Json::parse(out.substr(out.rfind('\n') + 1));
}

Json generate_json(const std::string& args) {
  ProcessResult r = run_ftune("generate --greedy --max-new-tokens 24 --json " + args + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return Json::parse(r.output, nullptr, /*allow_exceptions=*/false);
}

class GenerateOracle : public ::testing::Test {
 protected:
  void SetUp() override {
    ProcessResult r = run_oracle("pipeline_make_tokenizer.py", tok() + " llama3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string tok() const { return dir_.file("tok"); }
  TempDir dir_;
};

TEST_F(GenerateOracle, PromptTextMatchesTheTokenizersIdsAndDecode) {
  const std::string model = shell_quote(dir_.file("m"));
  ProcessResult init = run_ftune("model init --model.preset tiny-llama3 --model.seed 11 --model.tokenizer " +
                                 shell_quote(tok()) + " --out " + model);
  ASSERT_EQ(init.exit_code, 0) << init.output;

  const std::string prompt = "Hello there! What is the capital of France?";
  Json by_text = generate_json("--model " + model + " --prompt " + shell_quote(prompt));
  ASSERT_TRUE(by_text.is_object());
  Json prompt_ids = oracle_json("encode " + shell_quote(tok()) + " " + shell_quote(prompt));
  ASSERT_GT(prompt_ids.size(), 1u);
  EXPECT_EQ(prompt_ids[0], kBos) << "the post-processor's BOS";
  std::string ids_arg;
  for (const Json& id : prompt_ids) ids_arg += (ids_arg.empty() ? "" : ",") + std::to_string(id.get<int>());
  Json by_ids = generate_json("--model " + model + " --prompt-ids " + ids_arg);
  EXPECT_EQ(by_text["ids"], by_ids["ids"]);
  ASSERT_FALSE(by_text["ids"].empty());
  // The model's 512 rows exceed the tokenizer's ~400 tokens: `tokenizers` drops unknown ids, so
  // the decode below checks that ftune drops the same ones.
  Json want = oracle_json("decode " + shell_quote(tok()) + " " + shell_quote(by_text["ids"].dump()));
  EXPECT_EQ(by_text["text"], want) << by_text.dump();
  EXPECT_EQ(by_ids["text"], want);

  // The same tokenizer given on the command line to a model directory without one (its ids
  // may differ: there the preset's EOS ends generation, not the tokenizer's).
  const std::string bare = shell_quote(dir_.file("bare"));
  ASSERT_EQ(run_ftune("model init --model.preset tiny-llama3 --model.seed 11 --out " + bare).exit_code, 0);
  Json flagged = generate_json("--model " + bare + " --tokenizer " + shell_quote(tok()) + " --prompt " +
                               shell_quote(prompt));
  ASSERT_TRUE(flagged.is_object());
  EXPECT_EQ(flagged["text"],
            oracle_json("decode " + shell_quote(tok()) + " " + shell_quote(flagged["ids"].dump())));
}

TEST_F(GenerateOracle, InitRefusesATokenizerTheVocabularyCannotHold) {
  ProcessResult r = run_ftune("model init --model.preset tiny-llama --model.tokenizer " + shell_quote(tok()) +
                              " --out " + shell_quote(dir_.file("m")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "the model's vocab_size is 256 (preset tiny-llama)")) << r.output;
  EXPECT_TRUE(contains(r.output, tok() + "/tokenizer.json has ")) << r.output;
}

// A chat template kept in chat_template.jinja (transformers >= 4.50) or chat_template.json (the
// processors' form, which transformers' tokenizers do not read) travels with the tokenizer into
// the model directory; transformers renders the .jinja copy as the original.
TEST_F(GenerateOracle, ChatTemplateFilesTravelWithTheTokenizer) {
  Json cfg = Json::parse(read_file(tok() + "/tokenizer_config.json"));
  const std::string tmpl = cfg.at("chat_template");
  cfg.erase("chat_template");
  write_file(tok() + "/tokenizer_config.json", cfg.dump(2));
  write_file(tok() + "/chat_template.jinja", tmpl);
  write_file(tok() + "/chat_template.json", Json{{"chat_template", tmpl}}.dump());
  const std::string model = dir_.file("m");
  ProcessResult init = run_ftune("model init --model.preset tiny-llama3 --model.config_only "
                                 "--model.tokenizer " + shell_quote(tok()) + " --out " + shell_quote(model));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_EQ(read_file(model + "/chat_template.jinja"), tmpl);
  EXPECT_EQ(read_file(model + "/chat_template.json"), read_file(tok() + "/chat_template.json"));
  auto render = [](const std::string& dir) {
    ProcessResult r = run_oracle("chat_template_oracle.py", shell_quote(dir));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const size_t at = r.output.rfind("{\"render\"");
    return at == std::string::npos ? Json() : Json::parse(r.output.substr(at));
  };
  const Json a = render(tok()), b = render(model);
  EXPECT_EQ(b["has_jinja"], true);
  EXPECT_TRUE(contains(b["render"].get<std::string>(), "<|start_header_id|>assistant")) << b.dump();
  EXPECT_EQ(b["render"], a["render"]);
}

}  // namespace
}  // namespace ftune::test
