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
#include "runtime/model/loss.h"
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

TEST_F(ModelTest, UnitRunnerRunsEveryUnitInOrder) {
  for (const char* name : {"tiny-llama", "tiny-llama3"}) {  // untied and tied heads
    auto m = tiny(name);
    at::Tensor ids = random_ids(m->config(), 2, 5);
    at::Tensor plain = m->forward(ids);
    std::vector<size_t> seen;
    std::vector<std::vector<size_t>> uses;
    m->set_unit_runner([&](const UnitCall& call, const at::Tensor& input) {
      seen.push_back(call.unit);
      uses.push_back(call.uses);
      return call.run(input);
    });
    EXPECT_TRUE(at::equal(plain, m->forward(ids))) << name;
    EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2, 3})) << name;
    EXPECT_EQ(m->head_unit(), 3u);
    const bool tied = m->config().tie_word_embeddings;
    EXPECT_EQ(uses.back(), tied ? (std::vector<size_t>{3, 0}) : (std::vector<size_t>{3})) << name;
  }
}

// Activation checkpointing through the UnitRunner seam: forward keeps only each unit's input,
// backward runs the unit again with grad and back-propagates through it. The unit's parameters
// are inputs of the Function, so autograd routes their gradients (a tied head's two parts
// summed) as it would without recomputation; the call travels to backward in a capsule.
int g_unit_calls = 0;

struct CallHolder : torch::CustomClassHolder {
  explicit CallHolder(UnitCall c) : call(std::move(c)) {}
  UnitCall call;
};

struct RecomputeUnit : torch::autograd::Function<RecomputeUnit> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            at::TensorList params, c10::intrusive_ptr<CallHolder> holder) {
    ctx->save_for_backward({input});
    ctx->saved_data["params"] = params.vec();
    ++g_unit_calls;
    at::Tensor out = holder->call.run(input);  // grad mode is off here
    ctx->saved_data["call"] = c10::IValue::make_capsule(std::move(holder));
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor in = ctx->get_saved_variables()[0].detach();
    const bool differentiable = in.is_floating_point();
    if (differentiable) in.requires_grad_(true);
    auto holder = c10::static_intrusive_pointer_cast<CallHolder>(
        ctx->saved_data["call"].toCapsule());
    std::vector<at::Tensor> wrt = ctx->saved_data["params"].toTensorVector();
    if (differentiable) wrt.insert(wrt.begin(), in);
    at::AutoGradMode with_grad(true);
    ++g_unit_calls;
    auto g = torch::autograd::grad({holder->call.run(in)}, wrt, {grads[0]}, std::nullopt,
                                   false, /*allow_unused=*/true);
    if (!differentiable) g.insert(g.begin(), at::Tensor());
    g.push_back(at::Tensor());  // the capsule
    return g;
  }
};

TEST_F(ModelTest, UnitRunnerSupportsRecomputeInBackward) {
  for (const char* name : {"tiny-llama", "tiny-llama3"}) {
    auto m = tiny(name);
    at::Tensor ids = random_ids(m->config(), 2, 6);
    at::Tensor labels = random_ids(m->config(), 2, 6);
    ForwardInputs in;
    in.ids = ids;
    m->loss(in, labels).backward();
    std::vector<at::Tensor> plain;
    for (auto& p : m->parameters()) plain.push_back(p.grad().clone());
    m->zero_grad();
    g_unit_calls = 0;
    auto units = m->parameter_units();
    m->set_unit_runner([&units](const UnitCall& call, const at::Tensor& input) {
      std::vector<at::Tensor> params;
      for (size_t u : call.uses)
        for (auto& p : units[u].params) params.push_back(p.second);
      // A std::vector would not count as tensor inputs: pass a TensorList.
      return RecomputeUnit::apply(input, at::TensorList(params),
                                  c10::make_intrusive<CallHolder>(call));
    });
    m->loss(in, labels).backward();
    EXPECT_EQ(g_unit_calls, 8) << name;  // each of 4 units: once forward, once in backward
    auto params = m->parameters();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_LT(max_abs_diff(plain[i], params[i].grad()), 1e-6) << name << " " << i;
  }
}

// Packed rows: each document gives the loss and gradients it gives alone.
TEST_F(ModelTest, PackedDocumentsAttendOnlyWithinThemselves) {
  for (const char* name : {"tiny-llama", "tiny-mistral"}) {
    auto m = tiny(name);
    const ModelConfig& c = m->config();
    at::Tensor a = random_ids(c, 1, 7), b = random_ids(c, 1, 11), d = random_ids(c, 1, 6);
    at::Tensor la = random_ids(c, 1, 7), lb = random_ids(c, 1, 11), ld = random_ids(c, 1, 6);
    // Row 0: a + b (18), row 1: d + 12 tokens of padding (a document of its own, ignored).
    at::Tensor pad = at::zeros({1, 12}, at::kLong);
    ForwardInputs packed;
    packed.ids = at::cat({at::cat({a, b}, 1), at::cat({d, pad}, 1)}, 0);
    packed.positions = at::cat({at::cat({at::arange(7), at::arange(11)}).unsqueeze(0),
                                at::cat({at::arange(6), at::arange(12)}).unsqueeze(0)}, 0);
    packed.cu_seqlens = at::tensor(std::vector<int32_t>{0, 7, 18, 24, 36});
    packed.max_seqlen = 12;
    at::Tensor labels = at::cat({at::cat({la, lb}, 1),
                                 at::cat({ld, at::full({1, 12}, CausalLM::kIgnoreLabel)}, 1)}, 0);
    m->loss(packed, labels).backward();
    std::vector<at::Tensor> packed_grads;
    for (auto& p : m->parameters()) packed_grads.push_back(p.grad().clone());
    m->zero_grad();
    at::Tensor alone = at::zeros({});
    for (auto [ids, lab] : {std::pair{a, la}, std::pair{b, lb}, std::pair{d, ld}}) {
      ForwardInputs one;
      one.ids = ids;
      alone = alone + m->loss(one, lab);
    }
    alone.backward();
    auto params = m->parameters();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_LT(max_abs_diff(packed_grads[i], params[i].grad()), 1e-5) << name << " " << i;
  }
}

// The chunked fused loss equals the plain cross-entropy of the logits, in value and gradient.
TEST_F(ModelTest, ChunkedLossMatchesPlainCrossEntropy) {
  auto m = tiny("tiny-llama");
  at::Tensor ids = random_ids(m->config(), 2, 9);
  at::Tensor labels = random_ids(m->config(), 2, 9);
  labels.index_put_({0, 3}, CausalLM::kIgnoreLabel);
  ForwardInputs in;
  in.ids = ids;
  at::Tensor ref = at::cross_entropy_loss(m->forward(in).reshape({18, -1}), labels.reshape({-1}),
                                          {}, at::Reduction::Sum, CausalLM::kIgnoreLabel);
  ref.backward();
  at::Tensor ref_grad = m->lm_head()->weight.grad().clone();
  m->zero_grad();
  at::Tensor ours = m->loss(in, labels, /*chunk_tokens=*/5);
  ours.backward();
  EXPECT_LT((ours - ref).abs().item<double>(), 1e-4 * ref.abs().item<double>());
  EXPECT_LT(max_abs_diff(ref_grad, m->lm_head()->weight.grad()), 1e-6);
}

// A frozen head (LoRA) gets no weight gradient from the fused loss, and the hidden states the
// same one as with a trained head.
TEST_F(ModelTest, ChunkedLossOfAFrozenHeadGivesOnlyTheInputGradient) {
  at::manual_seed(4);
  at::Tensor hidden = at::randn({11, 16}, at::kFloat).requires_grad_(true);
  at::Tensor weight = at::randn({40, 16}, at::kFloat);
  at::Tensor labels = at::randint(0, 40, {11}, at::kLong);
  model::linear_cross_entropy_sum(hidden, weight.clone().requires_grad_(true), labels, -100, 4).backward();
  at::Tensor want = hidden.grad().clone();
  hidden.mutable_grad() = at::Tensor();
  model::linear_cross_entropy_sum(hidden, weight, labels, -100, 4).backward();
  EXPECT_FALSE(weight.grad().defined());
  EXPECT_LT(max_abs_diff(hidden.grad(), want), 1e-6);
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
