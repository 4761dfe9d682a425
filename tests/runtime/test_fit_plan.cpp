// The planner behind `ftune plan` and the pre-check of `ftune train`: activation and loss
// estimates against hand-computed figures, suggestions, the JSON and the command.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "runtime/memory_estimate.h"
#include "runtime/train/fit_plan.h"
#include "tests/support/test_support.h"

using namespace ftune;
using model::Checkpointing;

namespace {

train::PlanOptions preset_options(const std::string& preset, int64_t gpus) {
  train::PlanOptions o;
  o.preset = preset;
  o.gpus = gpus;
  return o;
}

train::PlanResult plan(const train::PlanOptions& o) { return train::plan_run(train::plan_model(o), o); }

bool suggests(const train::PlanResult& r, const std::string& flag) {
  for (const auto& s : r.suggestions)
    if (s.flag.find(flag) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(FitPlan, LayerActivationsOfTheOneBillionShape) {
  const auto cfg = model::preset("llama-3.2-1b");  // H 2048, q 2048, kv 512, I 8192, 32 heads
  // norms 2 x (4H fp32 + 2 x 2H bf16) = 32768; attention 2 x (q + 2 kv + q + q) = 14336;
  // log-sum-exp 4 x 32 = 128; MLP 2 x 4I = 65536
  EXPECT_EQ(model::layer_activation_bytes_per_token(cfg, 2), 32768 + 14336 + 128 + 65536);
  const int64_t full = 2048LL * 112768, boundary = 2048LL * 2048 * 2;
  const int64_t ends = 2048LL * 8 * 2048 + boundary;  // final norm + embeddings' output
  EXPECT_EQ(model::activation_bytes(cfg, {2048, 2, Checkpointing::on, 2}), 16 * boundary + full + ends);
  EXPECT_EQ(model::activation_bytes(cfg, {2048, 2, Checkpointing::off, 2}), 16 * full + ends);
  // every 4th layer: 4 of 16 recompute
  EXPECT_EQ(model::activation_bytes(cfg, {2048, 2, Checkpointing::every_k, 4}),
            12 * full + 4 * boundary + full + ends);
}

TEST(FitPlan, LossChunkAndHeadGradient) {
  const auto cfg = model::preset("llama-3.2-1b");
  // one 1024-token chunk of 128,256 logits in bf16, fp32 and the bf16 gradient; the head's
  // fp32 gradient and its bf16 cast; the hidden states' gradient
  EXPECT_EQ(model::loss_bytes(cfg, 2048, 1024, 2), 1024LL * 128256 * 8 + 128256LL * 2048 * 6 + 2048LL * 2048 * 2);
  EXPECT_EQ(model::loss_bytes(cfg, 100, 1024, 2), 100LL * 128256 * 8 + 128256LL * 2048 * 6 + 100LL * 2048 * 2)
      << "a chunk is never larger than the micro-batch";
  EXPECT_EQ(model::loss_bytes(cfg, 2048, 1024, 2, /*head_trains=*/false), 1024LL * 128256 * 8 + 2048LL * 2048 * 2)
      << "a frozen head (LoRA) gets no weight gradient";
}

TEST(FitPlan, LoraTargetsCountAdapters) {
  const auto cfg = model::preset("llama-3.2-1b");
  int64_t trainable = 0;
  for (const auto& u : model::unit_specs(cfg, 16, {"q_proj", "k_proj", "v_proj", "o_proj"}))
    trainable += u.trainable_params;
  // per layer: q and o 16 x (2048 + 2048), k and v 16 x (2048 + 512); PEFT reports 3,407,872
  EXPECT_EQ(trainable, 16 * (2 * 65536 + 2 * 40960));
  EXPECT_THROW(model::unit_specs(cfg, 16, {"qproj"}), Error);
}

TEST(FitPlan, Presets405B) {
  EXPECT_EQ(model::parameter_count(model::preset("llama-3.1-405b")), 405'853'388'800LL);
}

TEST(FitPlan, SeventyBillionOn64GpusFits) {
  auto r = plan(preset_options("llama-3.1-70b", 64));
  EXPECT_TRUE(r.fits) << train::plan_text(r);
  EXPECT_TRUE(r.suggestions.empty());
  EXPECT_LT(r.memory.total(), int64_t(45e9)) << train::plan_text(r);  // 42.3 GB, README
}

TEST(FitPlan, SeventyBillionOnOneNodeOffloads) {
  auto o = preset_options("llama-3.1-70b", 8);
  o.gpu_memory_gb = 141;  // H200
  auto r = plan(o);
  EXPECT_FALSE(r.fits);
  EXPECT_TRUE(suggests(r, "--offload")) << train::plan_text(r);
  o.offload = true;
  r = plan(o);
  EXPECT_TRUE(r.fits) << train::plan_text(r);
  // master copy + moments + gradient staging: 16 bytes x 70.55e9 in the node's host memory
  EXPECT_NEAR(double(r.host_per_node) / 1e9, 16 * 70.553706496, 0.01);
  o.host_memory_gb = 1024;
  EXPECT_FALSE(plan(o).fits) << "the host must hold the offloaded state too";
  o.host_memory_gb = 0;
  o.gpu_memory_gb = 80;  // the fp32 slice and gradient slice alone are 70.6 GB per GPU
  EXPECT_FALSE(plan(o).fits) << train::plan_text(plan(o));
}

TEST(FitPlan, EightBillionOnOneGpuSuggestsWhatFits) {
  auto o = preset_options("llama-3.1-8b", 1);
  o.micro_batch = 4;
  o.activation_checkpointing = "off";
  auto r = plan(o);
  EXPECT_FALSE(r.fits);
  EXPECT_TRUE(suggests(r, "--micro-batch")) << train::plan_text(r);
  EXPECT_TRUE(suggests(r, "--activation-checkpointing")) << train::plan_text(r);
  EXPECT_TRUE(suggests(r, "--offload")) << train::plan_text(r);
  EXPECT_TRUE(suggests(r, "--method qlora")) << train::plan_text(r);
  for (const auto& s : r.suggestions) EXPECT_LT(s.total, r.memory.total()) << s.change;
  const auto j = train::plan_json(r);
  EXPECT_FALSE(j["fits"].get<bool>());
  EXPECT_EQ(j["total_bytes"].get<int64_t>(), r.memory.total());
  int64_t sum = 0;
  for (const auto& [k, v] : j["breakdown"].items()) sum += v.get<int64_t>();
  EXPECT_EQ(sum, r.memory.total());
  EXPECT_EQ(j["suggestions"].size(), r.suggestions.size());
}

TEST(FitPlan, SeventyBillionLoraShardsOrQuantisesTheBase) {
  auto o = preset_options("llama-3.1-70b", 8);
  o.method = "lora";
  auto r = plan(o);
  EXPECT_FALSE(r.fits) << "a replicated bf16 70B base is 141 GB";
  EXPECT_TRUE(suggests(r, "--shard sharded")) << train::plan_text(r);
  EXPECT_TRUE(suggests(r, "--method qlora")) << train::plan_text(r);
  o.shard = "sharded";
  EXPECT_TRUE(plan(o).fits);
}

TEST(FitPlan, OptionsFromATrainConfig) {
  train::TrainConfig c;
  c.model.path = "m";
  c.method.name = "lora";
  c.method.shard = "sharded";
  c.data.global_batch = 16;
  c.data.seq_len = 4096;
  c.train.activation_checkpointing = "every_k";
  c.train.activation_checkpointing_k = 3;
  c.precision.compute = "bfloat16";
  auto o = train::plan_options(c, 4, 2, int64_t(80e9));
  EXPECT_EQ(o.micro_batch, 4) << "micro_batch 0: the rank's whole share";
  EXPECT_EQ(o.seq_len, 4096);
  EXPECT_EQ(o.gpus, 4);
  EXPECT_EQ(o.gpus_per_node, 2);
  EXPECT_EQ(o.shard, "sharded");
  EXPECT_EQ(o.activation_checkpointing_k, 3);
  EXPECT_DOUBLE_EQ(o.gpu_memory_gb, 80);
}

TEST(FitPlan, BadOptionsNameTheFlag) {
  auto o = preset_options("llama-3.1-8b", 0);
  try {
    plan(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpus must be at least 1"), std::string::npos) << e.what();
  }
  o.gpus = 1;
  o.model = "dir";
  EXPECT_THROW(train::plan_model(o), Error) << "--model and --preset together";
  o.model.clear();
  o.method = "lora";
  o.offload = true;
  EXPECT_THROW(plan(o), Error);
}

TEST(FitPlan, CommandPrintsJsonAndExitsThreeWhenItDoesNotFit) {
  auto fits = test::run_ftune("plan --preset llama-3.1-70b --gpus 64 --json");
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  const auto j = nlohmann::json::parse(fits.output);
  EXPECT_TRUE(j["fits"].get<bool>());
  EXPECT_GT(j["breakdown"]["activations"].get<int64_t>(), 0);
  auto big = test::run_ftune("plan --preset llama-3.1-8b --gpus 1 --gpu-memory-gb 80");
  EXPECT_EQ(big.exit_code, 3) << big.output;
  EXPECT_NE(big.output.find("does not fit"), std::string::npos) << big.output;
  EXPECT_NE(big.output.find("optim.offload = true"), std::string::npos) << big.output;
  auto bad = test::run_ftune("plan --preset llama-3.1-8b --gpus 1 --activation-checkpointing sometimes");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--activation-checkpointing = 'sometimes'"), std::string::npos) << bad.output;
}
