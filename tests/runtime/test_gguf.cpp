// GGUF reader and writer round trips, the q/k permutation, conversions, and `model import` /
// `model info` on a tiny llama GGUF written with ftune's own writer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/checkpoint/gguf.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/gguf_import.h"
#include "runtime/gguf_rope.h"
#include "tests/runtime/gguf_test_util.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

using nlohmann::json;
using test::run_ftune;
using test::shell_quote;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

float bits_to_float(uint32_t n) {
  float f;
  std::memcpy(&f, &n, 4);
  return f;
}

TEST(Gguf, WritesAndReadsMetadataOfEveryKindAndAlignedTensors) {
  test::TempDir dir;
  gguf::MetadataOut md;
  md.add_string("general.architecture", "llama");
  md.add_u32("a.u32", 7);
  md.add_i32("a.i32", -3);
  md.add_f32("a.f32", 0.25f);
  md.add_bool("a.bool", true);
  md.add_strings("a.strings", {"x", "", "日本"});
  md.add_i32s("a.ints", {1, -2, 3});
  md.add_f32s("a.floats", {0.5, -1.5});
  std::vector<float> a(32 * 3), b(5);
  std::iota(a.begin(), a.end(), 0.0f);
  std::iota(b.begin(), b.end(), 100.0f);
  std::vector<gguf::TensorOut> ts = {{"a", {32, 3}, gguf::GgmlType::kF32, a.data(), a.size() * 4},
                                     {"b", {5}, gguf::GgmlType::kF32, b.data(), b.size() * 4}};
  gguf::write_file(dir.file("t.gguf"), md, ts, /*alignment=*/64);
  auto f = gguf::File::open(dir.file("t.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("a.u32"), 7);
  EXPECT_EQ(f->get_int("a.i32"), -3);
  EXPECT_EQ(f->get_float("a.f32"), 0.25);
  EXPECT_TRUE(f->get_bool("a.bool", false));
  EXPECT_EQ(f->find_key("a.strings")->strings, (std::vector<std::string>{"x", "", "日本"}));
  EXPECT_EQ(f->find_key("a.ints")->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f->find_key("a.floats")->floats, (std::vector<double>{0.5, -1.5}));
  ASSERT_EQ(f->tensors().size(), 2u);
  const gguf::TensorInfo& tb = *f->find("b");
  EXPECT_EQ(tb.offset % 64, 0u);
  EXPECT_EQ(f->find("a")->torch_shape(), (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(std::memcmp(f->data(tb), b.data(), 20), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->data(tb)) % 64, 0u);  // mmapped, page-aligned base
  EXPECT_THROW(f->get_int("a.strings"), Error);
  EXPECT_THROW(f->get_string("missing.key"), Error);
}

TEST(Gguf, VersionTwoReadsAsThree) {
  test::TempDir dir;
  test::TinyGguf().write(dir.file("t.gguf"));
  std::string bytes = test::read_file(dir.file("t.gguf"));
  bytes[4] = 2;  // v2 and v3 share the little-endian layout
  test::write_file(dir.file("v2.gguf"), bytes);
  auto f = gguf::File::open(dir.file("v2.gguf"));
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->tensors().size(), 20u);
}

TEST(Gguf, QkPermutationRoundTripsAndInterleavesHalves) {
  const int64_t heads = 2, head_dim = 4, cols = 3, rows = heads * head_dim;
  std::vector<float> hf(rows * cols), gg(rows * cols), back(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) hf[r * cols + c] = static_cast<float>(r * 10 + c);
  model::permute_qk_rows(hf.data(), gg.data(), rows, cols, heads, /*to_gguf=*/true);
  // Head 0's HF rows 0,1 | 2,3 (the two rotary halves) become GGUF rows 0,2 | 1,3.
  EXPECT_EQ(gg[0 * cols], 0.0f);
  EXPECT_EQ(gg[1 * cols], 20.0f);
  EXPECT_EQ(gg[2 * cols], 10.0f);
  EXPECT_EQ(gg[3 * cols], 30.0f);
  EXPECT_EQ(gg[4 * cols], 40.0f);
  model::permute_qk_rows(gg.data(), back.data(), rows, cols, heads, /*to_gguf=*/false);
  EXPECT_EQ(back, hf);
}

TEST(Gguf, HalfAndBf16ConversionsRoundToNearestEven) {
  EXPECT_EQ(gguf::float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(gguf::half_to_float(0xC000), -2.0f);
  EXPECT_EQ(gguf::float_to_half(65520.0f), 0x7C00);  // rounds up to +inf
  EXPECT_EQ(gguf::half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(gguf::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(gguf::float_to_bf16(bits_to_float(0x3F808000)), 0x3F80);  // tie to even (down)
  EXPECT_EQ(gguf::float_to_bf16(bits_to_float(0x3F818000)), 0x3F82);  // tie to even (up)
  EXPECT_EQ(gguf::bf16_to_float(0x4040), 3.0f);
}

TEST(Gguf, NameMappingBothWays) {
  EXPECT_EQ(model::hf_tensor_name("blk.12.attn_q.weight"), "model.layers.12.self_attn.q_proj.weight");
  EXPECT_EQ(model::hf_tensor_name("blk.0.ffn_norm.weight"), "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(model::hf_tensor_name("token_embd.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(model::hf_tensor_name("output.weight"), "lm_head.weight");
  EXPECT_EQ(model::hf_tensor_name("blk.0.attn_qkv.weight"), "");
  EXPECT_EQ(model::gguf_tensor_name("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight");
  EXPECT_EQ(model::gguf_tensor_name("model.norm.weight"), "output_norm.weight");
}

TEST(GgufImport, TinyModelImportsWithTokenizerAndInfo) {
  test::TempDir dir;
  test::TinyGguf tiny;
  tiny.tied = false;
  tiny.write(dir.file("tiny.gguf"));
  auto r = run_ftune("model import " + shell_quote(dir.file("tiny.gguf")) + " --out " +
                     shell_quote(dir.file("m")) + " --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "bfloat16")) << r.output;
  const json cfg = json::parse(test::read_file(dir.file("m/config.json")));
  EXPECT_EQ(cfg["hidden_size"], 64);
  EXPECT_EQ(cfg["num_key_value_heads"], 2);
  EXPECT_EQ(cfg["head_dim"], 16);
  EXPECT_EQ(cfg["vocab_size"], tiny.vocab());
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["dtype"], "bfloat16");
  EXPECT_EQ(cfg["bos_token_id"], 1);
  auto st = st::SafetensorsFile::open(dir.file("m/model.safetensors"));
  ASSERT_NE(st->find("lm_head.weight"), nullptr);
  EXPECT_EQ(st->find("lm_head.weight")->dtype, st::DType::BF16);
  EXPECT_EQ(st->find("model.layers.1.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{32, 64}));
  const json tc = json::parse(test::read_file(dir.file("m/tokenizer_config.json")));
  EXPECT_EQ(tc["eos_token"], "<|im_end|>");
  EXPECT_TRUE(contains(tc["chat_template"].get<std::string>(), "<|im_start|>assistant"));
  // The imported tokenizer works with the data tools.
  test::write_file(dir.file("in.jsonl"), "{\"text\": \"<|im_start|>the t\"}\n");
  auto enc = run_ftune("data encode --tokenizer " + shell_quote(dir.file("m")) + " " + shell_quote(dir.file("in.jsonl")));
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  EXPECT_TRUE(contains(enc.output, "[1,")) << enc.output;  // <|im_start|> kept whole
  auto info = run_ftune("model info " + shell_quote(dir.file("tiny.gguf")));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(contains(info.output, "GGUF v3, 21 tensors")) << info.output;
  EXPECT_TRUE(contains(info.output, "Q8_0:")) << info.output;
  EXPECT_TRUE(contains(info.output, "tied embeddings: no")) << info.output;
  EXPECT_EQ(run_ftune("model info --model " + shell_quote(dir.file("tiny.gguf"))).output, info.output);
  auto neither = run_ftune("model info");
  EXPECT_NE(neither.exit_code, 0);
  EXPECT_TRUE(contains(neither.output, "give the model once")) << neither.output;
}

TEST(GgufExport, ImportExportImportKeepsTensorsAndTokenizer) {
  test::TempDir dir;
  test::TinyGguf().write(dir.file("tiny.gguf"));
  const std::string a = shell_quote(dir.file("a")), b = shell_quote(dir.file("b"));
  ASSERT_EQ(run_ftune("model import " + shell_quote(dir.file("tiny.gguf")) + " --out " + a).exit_code, 0);
  auto e = run_ftune("model export --model " + a + " --dtype f32 --out " + shell_quote(dir.file("x.gguf")));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_TRUE(contains(e.output, "20 tensors")) << e.output;
  ASSERT_EQ(run_ftune("model import " + shell_quote(dir.file("x.gguf")) + " --out " + b).exit_code, 0);
  auto fa = st::SafetensorsFile::open(dir.file("a/model.safetensors"));
  auto fb = st::SafetensorsFile::open(dir.file("b/model.safetensors"));
  ASSERT_EQ(fa->tensors().size(), 20u);
  ASSERT_EQ(fb->tensors().size(), 20u);
  for (const auto& t : fa->tensors()) {
    const st::TensorInfo* u = fb->find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->shape, t.shape);
    EXPECT_EQ(std::memcmp(fa->data(t), fb->data(*u), t.nbytes()), 0) << t.name;
  }
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "config.json"})
    EXPECT_EQ(test::read_file(dir.file(std::string("a/") + f)), test::read_file(dir.file(std::string("b/") + f))) << f;
  // The export is a valid GGUF with the llama metadata llama.cpp needs, the q/k rows permuted.
  auto g = gguf::File::open(dir.file("x.gguf"));
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  EXPECT_EQ(g->get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(g->get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g->get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(g->find(std::string("output.weight")), nullptr);  // tied
  const gguf::TensorInfo* q = g->find(std::string("blk.0.attn_q.weight"));
  const st::TensorInfo* hq = fa->find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_TRUE(q && hq);
  // GGUF row 1 of head 0 is HF row head_dim/2 (= 8): the second rotary half's first row.
  EXPECT_EQ(std::memcmp(g->data(*q) + 64 * 4, fa->data(*hq) + 8 * 64 * 4, 64 * 4), 0);
}

TEST(GgufExport, RefusesWhatGgufCannotCarry) {
  test::TempDir dir;
  test::TinyGguf().write(dir.file("tiny.gguf"));
  const std::string m = shell_quote(dir.file("m"));
  ASSERT_EQ(run_ftune("model import " + shell_quote(dir.file("tiny.gguf")) + " --out " + m).exit_code, 0);
  auto bad = run_ftune("model export --model " + m + " --dtype q4_k --out " + shell_quote(dir.file("x.gguf")));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(contains(bad.output, "--dtype 'q4_k' is not one of f32, f16, bf16, q8_0")) << bad.output;
  auto fmt = run_ftune("model export --model " + m + " --format onnx --out " + shell_quote(dir.file("x.gguf")));
  EXPECT_NE(fmt.exit_code, 0);
  EXPECT_TRUE(contains(fmt.output, "--format 'onnx'")) << fmt.output;
  std::remove(dir.file("m/tokenizer.json").c_str());
  auto notok = run_ftune("model export --model " + m + " --out " + shell_quote(dir.file("x.gguf")));
  EXPECT_NE(notok.exit_code, 0);
  EXPECT_TRUE(contains(notok.output, "has no tokenizer.json")) << notok.output;
  EXPECT_FALSE(std::ifstream(dir.file("x.gguf")).good());  // nothing half-written
}

// Tensors are dequantised one shard at a time: a sharded import holds the same tensors as a
// single-file one, with the index written last.
TEST(GgufImport, ShardedImportEqualsSingleFile) {
  test::TempDir dir;
  test::TinyGguf big;
  big.hidden = 512;
  big.mlp = 1024;
  big.heads = 8;
  big.kv_heads = 4;
  big.write(dir.file("big.gguf"));  // ~16 MB as float32
  const std::string in = shell_quote(dir.file("big.gguf"));
  ASSERT_EQ(run_ftune("model import " + in + " --out " + shell_quote(dir.file("one"))).exit_code, 0);
  auto r = run_ftune("model import " + in + " --out " + shell_quote(dir.file("many")) + " --max-shard-mb 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json index = json::parse(test::read_file(dir.file("many/model.safetensors.index.json")));
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  EXPECT_GE(files.size(), 3u);
  auto one = st::SafetensorsFile::open(dir.file("one/model.safetensors"));
  const st::Checkpoint many = st::Checkpoint::open(dir.file("many"));
  EXPECT_EQ(many.names().size(), one->tensors().size());
  for (const auto& t : one->tensors()) {
    const st::TensorInfo& u = many.info(t.name);
    ASSERT_EQ(u.nbytes(), t.nbytes()) << t.name;
    EXPECT_EQ(std::memcmp(one->data(t), many.file_of(t.name).data(u), t.nbytes()), 0) << t.name;
  }
}

// llama3 RoPE scaling: llama.cpp keeps it as a rope_freqs tensor; import recovers the
// parameters, export writes the tensor back.
TEST(GgufImport, Llama3RopeFactorsRoundTrip) {
  model::RopeConfig r;
  r.type = model::RopeType::kLlama3;
  r.theta = 500000.0;
  r.factor = 32.0;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 8192;
  const std::vector<float> factors = model::llama3_rope_factors(r, 64);
  ASSERT_EQ(factors.size(), 32u);
  EXPECT_EQ(factors.front(), 1.0f);   // the fastest frequencies are not stretched
  EXPECT_EQ(factors.back(), 32.0f);   // the slowest by the full factor
  auto back = model::infer_llama3_rope(factors, 500000.0, 64);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->original_max_position_embeddings, 8192);
  EXPECT_EQ(back->factor, 32.0);
  std::vector<float> odd = factors;
  odd[16] *= 1.5f;
  EXPECT_FALSE(model::infer_llama3_rope(odd, 500000.0, 64).has_value());

  test::TempDir dir;
  test::TinyGguf tiny;  // head_dim 16
  r.factor = 8.0;
  const std::vector<float> f16 = model::llama3_rope_factors(r, 16);
  tiny.write(dir.file("l3.gguf"), [&](gguf::MetadataOut& md, std::vector<gguf::TensorOut>& ts) {
    for (auto& [key, v] : md.items)
      if (key == "llama.rope.freq_base") v.f = 500000.0;
    ts.push_back({"rope_freqs.weight", {f16.size()}, gguf::GgmlType::kF32, f16.data(), f16.size() * 4});
  });
  auto imp = run_ftune("model import " + shell_quote(dir.file("l3.gguf")) + " --out " + shell_quote(dir.file("m")));
  ASSERT_EQ(imp.exit_code, 0) << imp.output;
  const json cfg = json::parse(test::read_file(dir.file("m/config.json")));
  EXPECT_EQ(cfg["rope_scaling"]["rope_type"], "llama3") << cfg.dump();
  EXPECT_EQ(cfg["rope_scaling"]["factor"], 8.0);
  EXPECT_EQ(cfg["rope_scaling"]["original_max_position_embeddings"], 8192);
  auto info = run_ftune("model info " + shell_quote(dir.file("l3.gguf")));
  EXPECT_TRUE(contains(info.output, "llama3")) << info.output;
  EXPECT_FALSE(contains(info.output, "note:")) << info.output;  // rope_freqs is no parameter
  auto exp = run_ftune("model export --model " + shell_quote(dir.file("m")) + " --dtype f32 --out " + shell_quote(dir.file("x.gguf")));
  ASSERT_EQ(exp.exit_code, 0) << exp.output;
  auto g = gguf::File::open(dir.file("x.gguf"));
  const gguf::TensorInfo* rf = g->find(std::string("rope_freqs.weight"));
  ASSERT_NE(rf, nullptr);
  EXPECT_EQ(std::memcmp(g->data(*rf), f16.data(), f16.size() * 4), 0);
}

// Every cut of the file, header or data, is refused with an ftune::Error naming the file (the
// bounds checks, not luck, stop each read).
TEST(Gguf, EveryTruncationIsAnErrorNotACrash) {
  test::TempDir dir;
  test::TinyGguf().write(dir.file("t.gguf"));
  const std::string bytes = test::read_file(dir.file("t.gguf"));
  size_t refused = 0;
  // Every byte of the first 64 (magic, version, counts), then a stride through the ~5 KB header
  // (metadata, tokenizer arrays, tensor infos) and the data.
  for (size_t n = 0; n < bytes.size(); n += (n < 64 ? 1 : n < 6000 ? 7 : 4999)) {
    test::write_file(dir.file("cut.gguf"), bytes.substr(0, n));
    try {
      gguf::File::open(dir.file("cut.gguf"));
      ADD_FAILURE() << "a file cut to " << n << " of " << bytes.size() << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), dir.file("cut.gguf"))) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, 900u);
}

}  // namespace
}  // namespace ftune
