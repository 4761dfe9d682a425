// Unit tests of the model in-process: config.json reading, HF names, the seams for sharding,
// adapters and recomputation, the KV cache, and checkpoint round trips in C++.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <torch/autograd.h>

#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/generate.h"
#include "runtime/model/llama.h"
#include "tests/runtime/model_test_util.h"
#include "tests/support/test_support.h"

namespace ftune::model {
namespace {

using nlohmann::json;
using testing::error_of;
using testing::max_abs_diff;

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

std::shared_ptr<CausalLM> tiny(const std::string& name, uint64_t seed = 7) {
  auto m = std::make_shared<CausalLM>(preset(name));
  m->init_weights(seed);
  return m;
}

at::Tensor random_ids(const ModelConfig& cfg, int64_t batch, int64_t tokens) {
  return at::randint(cfg.vocab_size, {batch, tokens}, at::kLong);
}

json llama_json() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 100}, {"hidden_size", 32},
          {"intermediate_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"eos_token_id", {5, 6}}};
}

TEST_F(ModelTest, ReadsRopeParametersAndOldRopeScalingAlike) {
  json modern = llama_json();
  modern["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0},
                               {"factor", 8.0}, {"low_freq_factor", 1.0},
                               {"high_freq_factor", 4.0},
                               {"original_max_position_embeddings", 8192}};
  json old = llama_json();
  old["rope_theta"] = 500000.0;
  old["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig a = ModelConfig::from_json(modern, "modern.json");
  ModelConfig b = ModelConfig::from_json(old, "old.json");
  for (const ModelConfig* c : {&a, &b}) {
    EXPECT_EQ(c->rope.type, RopeType::kLlama3);
    EXPECT_EQ(c->rope.theta, 500000.0);
    EXPECT_EQ(c->rope.factor, 8.0);
    EXPECT_EQ(c->head_dim, 8);  // hidden / heads when head_dim is absent
    EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{5, 6}));
  }
  EXPECT_TRUE(at::equal(RotaryEmbedding(a).inv_freq(), RotaryEmbedding(b).inv_freq()));
  // Re-saved configs keep the form they were read in.
  EXPECT_TRUE(a.to_json().contains("rope_parameters"));
  EXPECT_EQ(b.to_json()["rope_scaling"]["rope_type"], "llama3");
}

TEST_F(ModelTest, UnsupportedArchitectureNamesFileArchitectureAndSupportedOnes) {
  json j = llama_json();
  j["architectures"] = {"GPT2LMHeadModel"};
  std::string msg = error_of([&] { ModelConfig::from_json(j, "/models/x/config.json"); });
  EXPECT_NE(msg.find("/models/x/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GPT2LMHeadModel"), std::string::npos) << msg;
  for (const char* arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"})
    EXPECT_NE(msg.find(arch), std::string::npos) << msg;
}

TEST_F(ModelTest, UnknownKeysWarnAndUnsupportedRopeTypeFails) {
  json j = llama_json();
  j["fancy_new_feature"] = true;
  ::testing::internal::CaptureStderr();
  ModelConfig::from_json(j, "c.json");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("fancy_new_feature"), std::string::npos) << err;
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c.json"); }).find("yarn"),
            std::string::npos);
  j = llama_json();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of([&] { ModelConfig::from_json(j, "c.json"); }).find("multiple"),
            std::string::npos);
}

TEST_F(ModelTest, ParameterCountsMatchTheModelAndPublishedSizes) {
  for (const auto& name : {"tiny-llama", "tiny-llama3", "tiny-qwen2", "tiny-mistral"}) {
    ModelConfig cfg = preset(name);
    CausalLM m(cfg, at::TensorOptions().device(at::kMeta));  // shapes only, no memory
    int64_t n = 0;
    for (const auto& p : m.parameters()) n += p.numel();
    EXPECT_EQ(n, parameter_count(cfg)) << name;
  }
  // The counts Meta publishes for these shapes.
  EXPECT_EQ(parameter_count(preset("llama-3.2-1b")), 1'235'814'400);
  EXPECT_EQ(parameter_count(preset("llama-3.1-8b")), 8'030'261'248);
  EXPECT_EQ(parameter_count(preset("llama-3.1-70b")), 70'553'706'496);
}

TEST_F(ModelTest, ParameterNamesFollowHuggingFace) {
  auto m = tiny("tiny-qwen2");
  auto params = m->base_parameters();
  auto names = m->named_parameters();
  EXPECT_EQ(params.size(), names.size());
  for (const char* n : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.mlp.down_proj.weight",
                        "model.layers.1.post_attention_layernorm.weight", "model.norm.weight",
                        "lm_head.weight"})
    EXPECT_NE(names.find(n), nullptr) << n;
  EXPECT_EQ(names.find("model.layers.0.self_attn.o_proj.bias"), nullptr);  // Qwen2: no o bias
  auto tied = tiny("tiny-llama3");
  EXPECT_EQ(tied->named_parameters().find("lm_head.weight"), nullptr);
}

TEST_F(ModelTest, UnitsCoverEveryParameterOnce) {
  auto m = tiny("tiny-llama");
  auto units = m->parameter_units();
  ASSERT_EQ(units.size(), m->num_layers() + 2);
  EXPECT_EQ(units[1].name, "model.layers.0");
  EXPECT_EQ(units[1].params.size(), 9u);  // 2 norms + 7 projections
  EXPECT_EQ(units[1].params[0].first.rfind("model.layers.0.", 0), 0u);
  size_t total = 0;
  for (const auto& u : units) total += u.params.size();
  EXPECT_EQ(total, m->base_parameters().size());
}

// An adapter that adds a learned per-channel offset, standing in for LoRA.
struct OffsetAdapter : LinearAdapter {
  explicit OffsetAdapter(int64_t out) { offset = register_parameter("offset", at::ones({out})); }
  at::Tensor forward(const at::Tensor&, const at::Tensor& base, const LinearImpl&) override {
    return base + offset;
  }
  at::Tensor offset;
};

TEST_F(ModelTest, AdaptersAttachToNamedLinears) {
  auto m = tiny("tiny-llama");
  EXPECT_EQ(m->named_linears().size(), 7 * m->num_layers());
  at::Tensor ids = random_ids(m->config(), 1, 6);
  at::Tensor before = m->forward(ids);
  Linear up = m->find_linear("model.layers.1.mlp.up_proj");
  up->set_adapter(std::make_shared<OffsetAdapter>(up->out_features), "lora");
  EXPECT_NE(m->named_parameters().find("model.layers.1.mlp.up_proj.lora.offset"), nullptr);
  EXPECT_EQ(m->base_parameters().size(), parameter_shapes(m->config()).size());
  EXPECT_GT(max_abs_diff(before, m->forward(ids)), 1e-3);
  std::string msg = error_of([&] { m->find_linear("model.layers.1.mlp.up_prj"); });
  EXPECT_NE(msg.find("did you mean 'model.layers.1.mlp.up_proj'"), std::string::npos) << msg;
}

TEST_F(ModelTest, LayerRunnerWrapsEveryLayer) {
  auto m = tiny("tiny-llama");
  at::Tensor ids = random_ids(m->config(), 2, 5);
  at::Tensor plain = m->forward(ids);
  std::vector<size_t> seen;
  m->set_layer_runner([&](DecoderLayer& layer, const at::Tensor& h, const LayerContext& ctx) {
    seen.push_back(layer->index());
    return layer->forward(h, ctx);
  });
  EXPECT_TRUE(at::equal(plain, m->forward(ids)));
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1}));
}

// Activation checkpointing through the LayerRunner seam: forward keeps only the layer's input
// (and the shared RoPE tables), backward recomputes the layer with grad and back-propagates
// through it. Gradients must equal those of the plain run.
CausalLM* g_model = nullptr;  // the Function finds its layer by index
int g_layer_calls = 0;

struct RecomputeLayer : torch::autograd::Function<RecomputeLayer> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                            int64_t index, const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({hidden});
    ctx->saved_data["index"] = index;
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ++g_layer_calls;
    LayerContext lc{cos, sin};
    return g_model->layer(index)->forward(hidden, lc);  // grad mode is off here
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor h = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    LayerContext lc{ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor()};
    at::AutoGradMode with_grad(true);
    ++g_layer_calls;
    at::Tensor out = g_model->layer(ctx->saved_data["index"].toInt())->forward(h, lc);
    torch::autograd::backward({out}, {grads[0]});  // accumulates the layer's parameter grads
    return {h.grad(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

TEST_F(ModelTest, LayerRunnerSupportsRecomputeInBackward) {
  auto m = tiny("tiny-llama");
  g_model = m.get();
  at::Tensor ids = random_ids(m->config(), 2, 6);
  m->forward(ids).logsumexp(-1).mean().backward();
  std::vector<at::Tensor> plain;
  for (auto& p : m->parameters()) plain.push_back(p.grad().clone());
  m->zero_grad();
  m->set_layer_runner([](DecoderLayer& layer, const at::Tensor& h, const LayerContext& ctx) {
    EXPECT_TRUE(ctx.is_causal && !ctx.attn_mask.defined() && ctx.cache == nullptr);
    return RecomputeLayer::apply(h, static_cast<int64_t>(layer->index()), ctx.cos, ctx.sin);
  });
  m->forward(ids).logsumexp(-1).mean().backward();
  EXPECT_EQ(g_layer_calls, 4);  // each of the 2 layers: once forward, once in backward
  auto params = m->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LT(max_abs_diff(plain[i], params[i].grad()), 1e-6) << i;
}

// Prefill in chunks, then one token at a time, must give the full forward's logits; Mistral's
// window (16) is shorter than the 24 tokens, so the windowed mask is exercised too.
TEST_F(ModelTest, KVCacheMatchesFullForward) {
  at::NoGradGuard no_grad;
  for (const auto& name : {"tiny-llama3", "tiny-mistral", "tiny-qwen2"}) {
    auto m = tiny(name);
    at::Tensor ids = random_ids(m->config(), 2, 24);
    at::Tensor full = m->forward(ids);
    KVCache cache(m->config(), 2, 24, at::TensorOptions(at::kFloat));
    std::vector<at::Tensor> parts = {m->forward(ids.narrow(1, 0, 7), &cache),
                                     m->forward(ids.narrow(1, 7, 10), &cache)};
    for (int64_t t = 17; t < 24; ++t) parts.push_back(m->forward(ids.narrow(1, t, 1), &cache));
    EXPECT_LT(max_abs_diff(full, at::cat(parts, 1)), 1e-5) << name;
    EXPECT_EQ(cache.length(), 24);
  }
}

TEST_F(ModelTest, SaveLoadRoundTripWithDtypeConversion) {
  test::TempDir dir;
  auto m = tiny("tiny-llama3");
  save_model(*m, dir.file("bf16"), {20'000, "bfloat16", ""});
  EXPECT_TRUE(std::filesystem::exists(dir.file("bf16/model.safetensors.index.json")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("bf16/generation_config.json")));
  EXPECT_EQ(load_model_dir_config(dir.file("bf16")).dtype, "bfloat16");
  auto back = load_model(dir.file("bf16"), at::TensorOptions(at::kFloat));
  auto a = m->base_parameters(), b = back->base_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::equal(a[i].second.to(at::kBFloat16).to(at::kFloat), b[i].second)) << a[i].first;
}

TEST_F(ModelTest, MissingTensorsAreAllNamed) {
  test::TempDir dir;
  auto m = tiny("tiny-llama");
  std::vector<st::TensorView> views;
  for (const auto& [name, p] : m->base_parameters()) {
    if (name == "model.norm.weight" || name.find("layers.1.mlp.up_proj") != std::string::npos)
      continue;
    views.push_back({name, st::DType::F32, p.sizes().vec(), p.data_ptr()});
  }
  st::write_checkpoint(dir.path(), views);
  CausalLM fresh(m->config());
  std::string msg = error_of([&] { load_weights(fresh, dir.path()); });
  EXPECT_NE(msg.find("model.norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
}

TEST_F(ModelTest, SamplingIsSeededAndTopKOneIsGreedy) {
  at::Tensor logits = at::randn({50});
  auto gen = [](uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); };
  SamplingOptions top1{false, 0.7, 1.0, 1, 0};
  at::Generator g = gen(1);
  EXPECT_EQ(sample_next(logits, top1, g), logits.argmax().item<int64_t>());
  SamplingOptions nucleus{false, 1.3, 0.9, 20, 0};
  at::Generator g1 = gen(5), g2 = gen(5);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(sample_next(logits, nucleus, g1), sample_next(logits, nucleus, g2));
}

TEST_F(ModelTest, GenerationStopsAtEos) {
  auto m = tiny("tiny-llama");
  std::vector<int64_t> first = generate(*m, {1, 5, 9}, 8, {}, {});
  ASSERT_EQ(first.size(), 8u);
  const int64_t eos = first[2];
  auto end = std::find(first.begin(), first.end(), eos) + 1;  // the EOS itself is kept
  EXPECT_EQ(generate(*m, {1, 5, 9}, 8, {}, {eos}), std::vector<int64_t>(first.begin(), end));
}

}  // namespace
}  // namespace ftune::model
