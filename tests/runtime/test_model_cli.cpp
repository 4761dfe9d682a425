// `ftune model init`, `ftune model info` and `ftune generate` through the binary, including
// the messages a user sees for bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "data/tokenizer/tokenizer.h"
#include "runtime/checkpoint/safetensors.h"
#include "tests/data/tiny_tokenizer.h"
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

TEST(ModelCli, BuiltinByteTokenizerGivesTextInTextOut) {
  test::TempDir dir;
  const std::string model = shell_quote(dir.file("m"));
  auto small = run_ftune("model init --model.preset tiny-llama --model.tokenizer byte --out " + model);
  EXPECT_NE(small.exit_code, 0);
  EXPECT_TRUE(contains(small.output, "byte tokenizer has 258 tokens, but the model's vocab_size is 256"))
      << small.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("m"))) << "a refused init writes nothing";
  auto init = run_ftune("model init --model.preset tiny-llama3 --model.tokenizer byte --out " + model);
  ASSERT_EQ(init.exit_code, 0) << init.output;
  auto gen = run_ftune("generate --model " + model + " --prompt " + shell_quote("Hi") +
                       " --max-new-tokens 4 --greedy --json");
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  auto j = nlohmann::json::parse(gen.output.substr(gen.output.find('{')));
  EXPECT_EQ(j["ids"].size(), 4u);
  EXPECT_TRUE(j["text"].is_string()) << gen.output;
}

// --chat needs a chat template; the byte tokenizer has none. --system goes only with --chat.
TEST(ModelCli, ChatWithoutATemplateOrWithAStraySystemIsRefused) {
  test::TempDir dir;
  const std::string model = shell_quote(dir.file("m"));
  ASSERT_EQ(run_ftune("model init --model.preset tiny-llama3 --model.tokenizer byte --out " + model).exit_code, 0);
  auto chat = run_ftune("generate --model " + model + " --chat " + shell_quote("Hi") + " --max-new-tokens 2");
  EXPECT_NE(chat.exit_code, 0);
  EXPECT_TRUE(contains(chat.output, "generate --chat")) << chat.output;
  EXPECT_TRUE(contains(chat.output, "no chat template")) << chat.output;
  auto stray = run_ftune("generate --model " + model + " --prompt Hi --system " + shell_quote("Be brief."));
  EXPECT_NE(stray.exit_code, 0);
  EXPECT_TRUE(contains(stray.output, "--system TEXT goes with --chat TEXT")) << stray.output;
  auto two = run_ftune("generate --model " + model + " --prompt Hi --chat Hi");
  EXPECT_NE(two.exit_code, 0);
  EXPECT_TRUE(contains(two.output, "exactly one of --prompt TEXT, --prompt-ids 1,5,9 or --chat TEXT")) << two.output;
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
  // PEFT reports 207,093,760 trainable parameters for r=16 on all seven projections of a 70B.
  EXPECT_TRUE(contains(info.output, "LoRA r16 on all projections (207,093,760 trainable)")) << info.output;
  // 16 bytes per parameter (fp32 master 4, grads 4, moments 8) over 64 GPUs, 16.43 GiB, plus
  // two gathered bf16 head-sized units of 1,050,681,344 parameters, 3.91 GiB, and that unit's
  // bf16 gradients with the fp32 reduce-scatter buffer, 5.87 GiB: 26.21 GiB.
  EXPECT_TRUE(contains(info.output, "full, 64 GPUs: 26.21 GiB")) << info.output;
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
  EXPECT_TRUE(contains(text.output, "--prompt TEXT needs a tokenizer")) << text.output;
  EXPECT_TRUE(contains(text.output, dir.file("m") + " has no tokenizer.json")) << text.output;
  EXPECT_TRUE(contains(text.output, "--tokenizer PATH")) << text.output;
  EXPECT_TRUE(contains(text.output, "--prompt-ids")) << text.output;
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

// The hand-written byte-level tokenizer (99 tokens, EOS <|eot|> = 98) in dir/tok.
std::string write_tiny_tokenizer(const test::TempDir& dir) {
  const std::string tok = dir.file("tok");
  std::filesystem::create_directories(tok);
  test::write_file(tok + "/tokenizer.json", data::tiny_byte_level(true).dump());
  test::write_file(tok + "/tokenizer_config.json", R"({"eos_token": "<|eot|>"})");
  return tok;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string last_line(std::string out) {
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.substr(out.rfind('\n') + 1);  // npos + 1 == 0: the whole of a one-line output
}

// The JSON line of `generate --json` (stderr, merged in, may hold a [generate] note before it).
nlohmann::json parse_json_line(const test::ProcessResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(last_line(r.output), nullptr, /*allow_exceptions=*/false);
}

// The Python-free half of the text path (test_generate_oracle checks against `tokenizers`):
// the tokenizer is copied, --prompt equals --prompt-ids with the tokenizer's ids, and the text
// is the decoding of the new ids the tokenizer knows.
TEST(ModelCli, GenerateTextWithTheModelDirectorysTokenizer) {
  test::TempDir dir;
  const std::string tok_dir = write_tiny_tokenizer(dir), model = dir.file("m");
  auto init = run_ftune("model init --model.seed 5 --model.tokenizer " + shell_quote(tok_dir) +
                        " --out " + shell_quote(model));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_TRUE(contains(init.output, "tokenizer, 99 tokens")) << init.output;
  EXPECT_EQ(test::read_file(model + "/tokenizer.json"), test::read_file(tok_dir + "/tokenizer.json"));
  EXPECT_EQ(test::read_file(model + "/tokenizer_config.json"),
            test::read_file(tok_dir + "/tokenizer_config.json"));
  // A preset's placeholder bos/eos ids give way to the tokenizer's.
  auto config = nlohmann::json::parse(test::read_file(model + "/config.json"));
  EXPECT_EQ(config["eos_token_id"], 98) << config.dump();
  EXPECT_TRUE(config["bos_token_id"].is_null()) << config.dump();

  const std::string prompt = "the theme";
  const std::string common = " --max-new-tokens 24 --greedy --json --model " + shell_quote(model);
  nlohmann::json by_text = parse_json_line(run_ftune("generate --prompt " + shell_quote(prompt) + common));
  ASSERT_TRUE(by_text.is_object());
  auto tok = data::Tokenizer::load(tok_dir);
  nlohmann::json by_ids = parse_json_line(
      run_ftune("generate --prompt-ids " + join_ids(tok->encode(prompt, true)) + common));
  EXPECT_EQ(by_text, by_ids);
  std::vector<int32_t> known;  // the model has 256 rows, the tokenizer 99 tokens
  const auto new_ids = by_text["ids"].get<std::vector<int64_t>>();
  for (int64_t id : new_ids)
    if (id < tok->vocab_size()) known.push_back(static_cast<int32_t>(id));
  EXPECT_EQ(by_text["text"], tok->decode(known, true));

  // Without --json: the text for a text prompt (after a note on stderr when ids were left out).
  auto plain = run_ftune("generate --greedy --max-new-tokens 24 --model " + shell_quote(model) +
                         " --prompt " + shell_quote(prompt));
  std::string note;
  if (known.size() < new_ids.size())
    note = "[generate] note: " + std::to_string(new_ids.size() - known.size()) + " of " +
           std::to_string(new_ids.size()) + " new ids have no token in " + model +
           "/tokenizer.json (99 tokens); the text leaves them out\n";
  EXPECT_EQ(plain.output, note + by_text["text"].get<std::string>() + "\n");
}

TEST(ModelCli, GenerateTakesATokenizerFromTheCommandLine) {
  test::TempDir dir;
  const std::string tok_dir = write_tiny_tokenizer(dir), model = shell_quote(dir.file("m"));
  ASSERT_EQ(run_ftune("model init --out " + model).exit_code, 0);
  auto short_flag = parse_json_line(run_ftune("generate --model " + model + " --tokenizer " +
                                              shell_quote(tok_dir + "/tokenizer.json") +
                                              " --prompt the --greedy --max-new-tokens 8 --json"));
  EXPECT_TRUE(short_flag["text"].is_string()) << short_flag.dump();
  auto long_flag = parse_json_line(run_ftune("generate --model " + model + " --generate.tokenizer " +
                                             shell_quote(tok_dir) +
                                             " --prompt the --greedy --max-new-tokens 8 --json"));
  EXPECT_EQ(short_flag, long_flag);
}

// A tokenizer.json ftune cannot read costs --prompt-ids runs only the text; --prompt fails.
TEST(ModelCli, UnreadableTokenizerInTheModelDirectory) {
  test::TempDir dir;
  const std::string model = dir.file("m");
  ASSERT_EQ(run_ftune("model init --out " + shell_quote(model)).exit_code, 0);
  test::write_file(model + "/tokenizer.json", R"({"model": {"type": "WordPiece"}})");
  auto ids = run_ftune("generate --model " + shell_quote(model) + " --prompt-ids 1,2 --greedy --json");
  EXPECT_EQ(ids.exit_code, 0) << ids.output;
  EXPECT_TRUE(contains(ids.output, "\"text\": null")) << ids.output;
  EXPECT_TRUE(contains(ids.output, "[generate] warning: printing ids only: " + model + "/tokenizer.json"))
      << ids.output;
  auto text = run_ftune("generate --model " + shell_quote(model) + " --prompt hello");
  EXPECT_NE(text.exit_code, 0);
  EXPECT_TRUE(contains(text.output, model + "/tokenizer.json")) << text.output;
}

TEST(ModelCli, InitRefusesATokenizerBiggerThanTheVocabulary) {
  test::TempDir dir;
  const std::string tok_dir = write_tiny_tokenizer(dir);
  ASSERT_EQ(run_ftune("model init --model.config_only --out " + shell_quote(dir.file("cfg"))).exit_code, 0);
  auto config = nlohmann::json::parse(test::read_file(dir.file("cfg/config.json")));
  config["vocab_size"] = 64;
  test::write_file(dir.file("cfg/config.json"), config.dump());
  auto r = run_ftune("model init --model.config " + shell_quote(dir.file("cfg/config.json")) +
                     " --model.tokenizer " + shell_quote(tok_dir) + " --out " + shell_quote(dir.file("m")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, tok_dir + "/tokenizer.json has 99 tokens")) << r.output;
  EXPECT_TRUE(contains(r.output, "vocab_size is 64")) << r.output;
  EXPECT_TRUE(contains(r.output, "vocab_size >= 99")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("m"))) << "nothing is written for a refused tokenizer";
}

}  // namespace
}  // namespace ftune
