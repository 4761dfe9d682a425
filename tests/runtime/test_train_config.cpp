// `ftune train`'s configuration without LibTorch: the schedule, the rules validate() checks
// (each message names the key to change), and the example configs in configs/.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "common/error.h"
#include "runtime/train/train_config.h"
#include "tests/support/test_support.h"

namespace ftune::train {
namespace {

TEST(Schedule, WarmupThenCosineLinearOrConstant) {
  OptimSection o;
  o.lr = 1.0;
  ScheduleSection s;
  s.warmup_steps = 4;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 0, 14), 0.25);  // warm-up counts the step being taken
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 3, 14), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 4, 14), 1.0);  // decay starts at the peak
  EXPECT_NEAR(learning_rate(o, s, 9, 14), 0.1 + 0.9 * 0.5, 1e-12);  // half way: cos(pi/2)
  EXPECT_NEAR(learning_rate(o, s, 14, 14), 0.1, 1e-12);
  s.decay = "linear";
  EXPECT_NEAR(learning_rate(o, s, 9, 14), 0.55, 1e-12);
  s.decay = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 13, 14), 1.0);
}

std::string error_of(const TrainConfig& c, int world) {
  try {
    validate(c, world);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TrainConfig valid_config() {
  TrainConfig c;
  c.model.path = "m";
  c.data.shards = "s";
  c.data.global_batch = 8;
  return c;
}

// Every rule: a config that breaks it, on 2 ranks, and the words of the message that name
// the setting to change.
TEST(TrainValidate, EachRuleNamesTheKeyToChange) {
  EXPECT_EQ(error_of(valid_config(), 2), "");
  struct Rule {
    std::function<void(TrainConfig&)> breaks;
    const char* message;
  };
  const std::vector<Rule> rules = {
      {[](TrainConfig& c) { c.model.path = ""; }, "model.path is empty"},
      {[](TrainConfig& c) { c.precision.compute = "fp8"; }, "precision.compute = 'fp8' is not one of: float32, bfloat16"},
      {[](TrainConfig& c) { c.precision.reduce = "int8"; }, "precision.reduce = 'int8' is not one of"},
      {[](TrainConfig& c) { c.method.name = "qlor"; }, "method.name = 'qlor' is not one of: full, lora, dora, qlora, ia3, prefix"},
      {[](TrainConfig& c) { c.prefix.num_virtual_tokens = 0; }, "prefix.num_virtual_tokens must be at least 1"},
      {[](TrainConfig& c) { c.qlora.block = 48; }, "qlora.block = 48 must be a power of two"},
      {[](TrainConfig& c) { c.ia3.target_modules = {}; }, "ia3.target_modules is empty"},
      {[](TrainConfig& c) { c.lora.rank_pattern = {"q_proj"}; }, "lora.rank_pattern: 'q_proj' is not NAME=VALUE"},
      {[](TrainConfig& c) { c.lora.alpha_pattern = {"q_proj=-1"}; }, "lora.alpha_pattern: 'q_proj=-1' is not NAME=VALUE"},
      {[](TrainConfig& c) { c.method.shard = "half"; }, "method.shard = 'half' is not one of: auto, sharded, replicated"},
      {[](TrainConfig& c) { c.lora.bias = "some"; }, "lora.bias = 'some' is not one of: none, all, lora_only"},
      {[](TrainConfig& c) { c.optim.name = "adam"; }, "optim.name = 'adam' is not one of: adamw, sgd"},
      {[](TrainConfig& c) { c.schedule.decay = "step"; }, "schedule.decay = 'step' is not one of: cosine, linear, constant"},
      {[](TrainConfig& c) { c.train.activation_checkpointing = "some"; },
       "train.activation_checkpointing = 'some' is not one of: on, off, every_k"},
      {[](TrainConfig& c) { c.eval.metric = "loss"; }, "eval.metric = 'loss' is not one of: val_loss, val_ppl, val_acc"},
      {[](TrainConfig& c) { c.eval.export_ = "first"; }, "eval.export = 'first' is not one of: last, best"},
      {[](TrainConfig& c) { c.train.steps = 0; }, "train.steps must be positive (got 0), or set train.epochs"},
      {[](TrainConfig& c) { c.train.epochs = -1; }, "train.epochs must be >= 0"},
      {[](TrainConfig& c) { c.train.activation_checkpointing_k = 0; }, "train.activation_checkpointing_k must be at least 1"},
      {[](TrainConfig& c) { c.train.grad_clip = -1; }, "train.grad_clip must be >= 0"},
      {[](TrainConfig& c) { c.train.loss_chunk = 0; }, "train.loss_chunk must be at least 1"},
      {[](TrainConfig& c) { c.train.max_skipped_steps = -1; }, "train.max_skipped_steps must be >= 0"},
      {[](TrainConfig& c) { c.train.stop_after = -2; }, "train.stop_after must be >= 0"},
      {[](TrainConfig& c) { c.lora.r = 0; }, "lora.r must be at least 1"},
      {[](TrainConfig& c) { c.lora.alpha = 0; }, "lora.alpha must be positive"},
      {[](TrainConfig& c) { c.lora.dropout = 1; }, "lora.dropout must be in [0, 1)"},
      {[](TrainConfig& c) { c.lora.target_modules = {}; }, "lora.target_modules is empty"},
      {[](TrainConfig& c) { c.optim.lr = 0; }, "optim.lr must be positive"},
      {[](TrainConfig& c) { c.optim.weight_decay = -0.1; }, "optim.weight_decay must be >= 0"},
      {[](TrainConfig& c) { c.optim.beta2 = 1; }, "optim.beta1 and optim.beta2 must be in [0, 1)"},
      {[](TrainConfig& c) { c.optim.eps = 0; }, "optim.eps must be positive"},
      {[](TrainConfig& c) { c.schedule.warmup_steps = -1; }, "schedule.warmup_steps must be >= 0"},
      {[](TrainConfig& c) { c.schedule.warmup_ratio = 1.5; }, "schedule.warmup_ratio must be in [0, 1)"},
      {[](TrainConfig& c) { c.schedule.warmup_steps = 5; c.schedule.warmup_ratio = 0.1; },
       "set schedule.warmup_steps or schedule.warmup_ratio, not both"},
      {[](TrainConfig& c) { c.schedule.min_lr_ratio = 2; }, "schedule.min_lr_ratio must be in [0, 1]"},
      {[](TrainConfig& c) { c.eval.every = -1; }, "eval.every must be >= 0"},
      {[](TrainConfig& c) { c.eval.patience = -1; }, "eval.patience must be >= 0"},
      {[](TrainConfig& c) { c.eval.min_delta = -1; }, "eval.min_delta must be >= 0"},
      {[](TrainConfig& c) { c.checkpoint.every = -1; }, "checkpoint.every must be >= 0"},
      {[](TrainConfig& c) { c.checkpoint.keep = 0; }, "checkpoint.keep must be at least 1"},
      {[](TrainConfig& c) { c.log.every = 0; }, "log.every must be at least 1"},
      {[](TrainConfig& c) { c.log.time_every = -1; }, "log.time_every must be >= 0"},
      {[](TrainConfig& c) { c.comm.backend = "gloo"; }, "comm.backend: \"gloo\" is not auto, local, mpi or nccl"},
      {[](TrainConfig& c) { c.comm.step_timeout_s = 0; }, "comm.step_timeout_s: must be a positive number of seconds"},
      // Across sections.
      {[](TrainConfig& c) { c.eval.patience = 3; c.eval.every = 10; },
       "eval.patience = 3 needs a validation split: set data.val_fraction or data.val_shards"},
      {[](TrainConfig& c) { c.eval.export_ = "best"; }, "eval.export = best needs a validation split"},
      {[](TrainConfig& c) { c.data.val_fraction = 0.1; c.eval.patience = 2; },
       "eval.patience counts evaluations: set eval.every"},
      {[](TrainConfig& c) { c.method.shard = "sharded"; }, "method.shard = sharded is for LoRA's frozen base"},
      {[](TrainConfig& c) { c.lora.bias = "all"; }, "lora.bias = all applies to method.name = lora"},
      {[](TrainConfig& c) { c.optim.offload = true; c.optim.name = "sgd"; },
       "optim.offload = true is for method.name = full with optim.name = adamw"},
      {[](TrainConfig& c) { c.method.adapter = "a"; }, "method.adapter continues training an adapter"},
      {[](TrainConfig& c) { c.method.name = "qlora"; c.method.shard = "sharded"; },
       "method.shard = sharded: qlora's 4-bit base is held whole"},
      {[](TrainConfig& c) { c.train.micro_batch = 3; }, "train.micro_batch = 3 must divide the 4 sequences"},
      {[](TrainConfig& c) { c.data.global_batch = 7; }, "data.global_batch: 7 sequences do not divide over 2 ranks"},
      {[](TrainConfig& c) { c.data.seq_len = 1; }, "data.seq_len: must be at least 2"},
      {[](TrainConfig& c) { c.data.packing = "zip"; }, "data.packing"},
      {[](TrainConfig& c) { c.data.val_fraction = 1.5; }, "data.val_fraction: must be in [0, 1)"},
  };
  for (const Rule& rule : rules) {
    TrainConfig c = valid_config();
    rule.breaks(c);
    const std::string msg = error_of(c, 2);
    EXPECT_NE(msg.find(rule.message), std::string::npos) << "want: " << rule.message << "\ngot:  " << msg;
  }
}

TEST(Schedule, WarmupRatioIsAFractionOfAllSteps) {
  OptimSection o;
  o.lr = 1.0;
  ScheduleSection s;
  s.warmup_ratio = 0.1;
  s.decay = "constant";
  EXPECT_EQ(warmup_steps(s, 95), 10);  // rounded up
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 0, 95), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(o, s, 9, 95), 1.0);
}

TEST(EarlyStopping, ImprovementFollowsTheMetricsDirectionAndMinDelta) {
  EvalSection e;
  EXPECT_TRUE(improves(e, 5.0, std::nullopt));
  EXPECT_TRUE(improves(e, 1.9, 2.0));
  EXPECT_FALSE(improves(e, 2.0, 2.0));
  e.min_delta = 0.2;
  EXPECT_FALSE(improves(e, 1.9, 2.0));
  EXPECT_TRUE(improves(e, 1.7, 2.0));
  e.metric = "val_acc";  // higher is better
  EXPECT_FALSE(improves(e, 0.5, 0.4));
  EXPECT_TRUE(improves(e, 0.7, 0.4));
}

TEST(TrainConfigs, ExamplesLoadAndSetWhatTheySay) {
  struct Example {
    const char* name;
    const char* expect;
  };
  for (auto [name, expect] : {Example{"train-quickstart-lora", "name = \"lora\""},
                              Example{"llama-3.1-8b-lora", "target_modules = [\"all-linear\"]"},
                              Example{"llama-3-70b-full", "global_batch = 512"}}) {
    auto r = test::run_ftune("train --config " + test::source_dir() + "/configs/" + name +
                             ".toml --dump-config 2>&1");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << name << ": " << r.output;
  }
}

// The short forms set the same keys as the dotted flags.
TEST(TrainConfigs, ShortFormsSetTheirKeys) {
  auto r = test::run_ftune("train --model m --data s --method lora --out o --steps 7 --seq-len 33 "
                           "--global-batch 6 --micro-batch 3 --lr 0.5 --seed 9 --device cuda "
                           "--dtype bfloat16 --resume none --dump-config 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"path = \"m\"", "shards = \"s\"", "name = \"lora\"", "out = \"o\"",
                           "steps = 7", "seq_len = 33", "global_batch = 6", "micro_batch = 3",
                           "lr = 0.5", "seed = 9", "device = \"cuda\"", "compute = \"bfloat16\"",
                           "resume = \"none\""})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
}

}  // namespace
}  // namespace ftune::train
