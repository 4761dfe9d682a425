// `ftune model init`, `ftune model info` and `ftune generate` through the binary, including
// the messages a user sees for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "runtime/checkpoint/safetensors.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

using test::run_ftune;
using test::shell_quote;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ModelCli, InitInfoGenerateJson) {
  test::TempDir dir;
  const std::string model = shell_quote(dir.file("m"));
  auto init = run_ftune("model init --model.preset tiny-llama3 --model.seed 3 --out " + model);
  ASSERT_EQ(init.exit_code, 0) << init.output;
  auto info = run_ftune("model info --model " + model);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(contains(info.output, "LlamaForCausalLM")) << info.output;
  EXPECT_TRUE(contains(info.output, "llama3")) << info.output;
  EXPECT_TRUE(contains(info.output, "tied embeddings: yes")) << info.output;
  EXPECT_TRUE(contains(info.output, "F32:")) << info.output;
  auto gen = run_ftune("generate --model " + model +
                       " --prompt-ids 1,5,9 --max-new-tokens 12 --greedy --json");
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(gen.output, m,
                                std::regex(R"(\{"ids": \[([0-9, ]*)\], "text": null\})")))
      << gen.output;
  // Greedy is deterministic, and the long flag names work too.
  auto again = run_ftune("generate --generate.model " + model +
                         " --generate.prompt_ids 1,5,9 --generate.max_new_tokens 12 "
                         "--generate.greedy --generate.json");
  EXPECT_EQ(again.output, gen.output);
  auto sampled = run_ftune("generate --model " + model +
                           " --prompt-ids 1,5,9 --max-new-tokens 5 --temperature 0.8 "
                           "--top-p 0.9 --top-k 20 --seed 4");
  EXPECT_EQ(sampled.exit_code, 0) << sampled.output;
}

TEST(ModelCli, InfoFromConfigAloneDescribes70B) {
  test::TempDir dir;
  auto init = run_ftune("model init --model.preset llama-3.1-70b --model.config_only --out " +
                        shell_quote(dir.path()));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("model.safetensors")));
  auto info = run_ftune("model info --model " + shell_quote(dir.path()));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(contains(info.output, "70,553,706,496")) << info.output;
  EXPECT_TRUE(contains(info.output, "bfloat16")) << info.output;
}

TEST(ModelCli, InitFromConfigJsonInAnotherDtype) {
  test::TempDir dir;
  ASSERT_EQ(run_ftune("model init --model.preset tiny-mistral --model.config_only --out " +
                      shell_quote(dir.file("cfg"))).exit_code, 0);
  auto init = run_ftune("model init --model.config " + shell_quote(dir.file("cfg/config.json")) +
                        " --model.dtype bfloat16 --out " + shell_quote(dir.file("m")));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  auto info = run_ftune("model info --model " + shell_quote(dir.file("m")));
  EXPECT_TRUE(contains(info.output, "MistralForCausalLM")) << info.output;
  EXPECT_TRUE(contains(info.output, "sliding window:  16")) << info.output;
  EXPECT_TRUE(contains(info.output, "BF16:")) << info.output;
}

TEST(ModelCli, UnsupportedArchitectureIsRefusedClearly) {
  test::TempDir dir;
  test::write_file(dir.file("config.json"),
                   R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})");
  auto r = run_ftune("model info --model " + shell_quote(dir.path()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, dir.file("config.json"))) << r.output;
  EXPECT_TRUE(contains(r.output, "unsupported architecture 'GPT2LMHeadModel'")) << r.output;
  EXPECT_TRUE(contains(r.output, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"))
      << r.output;
}

// A checkpoint missing two tensors: generate names both and fails.
TEST(ModelCli, MissingTensorsAreNamed) {
  test::TempDir dir;
  const std::string full = dir.file("full"), cut = dir.file("cut");
  ASSERT_EQ(run_ftune("model init --model.preset tiny-qwen2 --out " + shell_quote(full)).exit_code, 0);
  auto file = st::SafetensorsFile::open(full + "/model.safetensors");
  std::vector<st::TensorView> kept;
  for (const auto& t : file->tensors()) {
    if (t.name == "model.layers.1.self_attn.k_proj.bias" || t.name == "lm_head.weight") continue;
    kept.push_back({t.name, t.dtype, t.shape, file->data(t)});
  }
  st::write_checkpoint(cut, kept);
  std::filesystem::copy_file(full + "/config.json", cut + "/config.json");
  auto r = run_ftune("generate --model " + shell_quote(cut) + " --prompt-ids 1,2 --greedy");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "model.layers.1.self_attn.k_proj.bias")) << r.output;
  EXPECT_TRUE(contains(r.output, "lm_head.weight")) << r.output;
}

TEST(ModelCli, BadGenerateInputExplainsItself) {
  test::TempDir dir;
  const std::string model = shell_quote(dir.file("m"));
  ASSERT_EQ(run_ftune("model init --out " + model).exit_code, 0);
  auto text = run_ftune("generate --model " + model + " --prompt hello");
  EXPECT_NE(text.exit_code, 0);
  EXPECT_TRUE(contains(text.output, "no tokenizer support yet")) << text.output;
  auto ids = run_ftune("generate --model " + model + " --prompt-ids 1,x,3");
  EXPECT_NE(ids.exit_code, 0);
  EXPECT_TRUE(contains(ids.output, "'x' is not a token id")) << ids.output;
  auto range = run_ftune("generate --model " + model + " --prompt-ids 1,99999 --greedy");
  EXPECT_NE(range.exit_code, 0);
  EXPECT_TRUE(contains(range.output, "outside the vocabulary")) << range.output;
  auto preset = run_ftune("model init --model.preset tiny-lama --out " + shell_quote(dir.file("x")));
  EXPECT_NE(preset.exit_code, 0);
  EXPECT_TRUE(contains(preset.output, "did you mean 'tiny-llama'")) << preset.output;
}

}  // namespace
}  // namespace ftune
