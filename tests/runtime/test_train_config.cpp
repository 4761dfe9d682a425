// `ftune train`'s configuration without LibTorch: the schedule, the rules validate() checks
// (each message names the key to change), and the example configs in configs/.
#include <gtest/gtest.h>

#include <cmath>

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

TEST(TrainValidate, EachRuleNamesTheKeyToChange) {
  TrainConfig c;
  c.model.path = "m";
  c.data.shards = "s";
  c.data.global_batch = 8;
  EXPECT_EQ(error_of(c, 2), "");
  TrainConfig bad = c;
  bad.model.path = "";
  EXPECT_NE(error_of(bad, 2).find("model.path is empty"), std::string::npos);
  bad = c;
  bad.model.dtype = "fp8";
  EXPECT_NE(error_of(bad, 2).find("model.dtype = 'fp8' is not one of: float32, bfloat16"), std::string::npos);
  bad = c;
  bad.schedule.decay = "step";
  EXPECT_NE(error_of(bad, 2).find("schedule.decay = 'step'"), std::string::npos);
  bad = c;
  bad.train.steps = 0;
  EXPECT_NE(error_of(bad, 2).find("train.steps must be positive"), std::string::npos);
  EXPECT_NE(error_of(c, 3).find("data.global_batch"), std::string::npos);  // 8 over 3 ranks
  bad = c;
  bad.train.micro_batch = 3;  // each of 2 ranks gets 4
  EXPECT_NE(error_of(bad, 2).find("train.micro_batch = 3 must divide the 4 sequences"), std::string::npos);
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
                           "lr = 0.5", "seed = 9", "device = \"cuda\"", "dtype = \"bfloat16\"",
                           "resume = \"none\""})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
}

}  // namespace
}  // namespace ftune::train
