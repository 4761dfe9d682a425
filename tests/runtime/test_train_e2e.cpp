// `ftune train` end to end on CPU: a tiny model and a generated corpus, `ftune data tokenize`,
// then `mpirun -np 2 ftune train` for full fine-tuning and for LoRA. The validation loss must
// fall; transformers loads the full export and PEFT the adapter, and their logits equal ftune's.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/peft/lora.h"
#include "tests/runtime/train_test_util.h"

namespace ftune::test {
namespace {

TEST_F(TrainE2E, FullFineTuneLearnsAndTransformersLoadsTheExport) {
  const std::string out = train("full", std::string(kLearn) + " --optim.lr 3e-3");
  auto [first, last] = val_losses(out);
  std::printf("[train] full: val_loss %.4f -> %.4f\n", first, last);
  EXPECT_LT(last, 0.7 * first);
  EXPECT_TRUE(std::filesystem::exists(out + "/config.toml"));
  expect_tensorboard_matches_metrics(out);
  write_ids(tmp_.file("ids.safetensors"));
  auto r = run_oracle("train_oracle.py", "full " + shell_quote(out + "/final") + " " +
                                             shell_quote(tmp_.file("ids.safetensors")) + " " +
                                             shell_quote(tmp_.file("hf.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto m = model::load_model(out + "/final", at::TensorOptions(at::kFloat));
  at::NoGradGuard no_grad;
  double diff = max_abs_diff(m->forward(ids()), read_tensor(tmp_.file("hf.safetensors"), "logits"));
  std::printf("[train] full export: max |logit diff| vs transformers %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  expect_same_greedy("--model " + shell_quote(out + "/final"), tmp_.file("hf.safetensors"));
}

TEST_F(TrainE2E, LoraLearnsAndPeftLoadsTheAdapter) {
  const std::string out =
      train("lora", std::string(kLearn) + " --optim.lr 1e-2 --lora.r 8 --lora.target_modules all-linear");
  auto [first, last] = val_losses(out);
  std::printf("[train] lora: val_loss %.4f -> %.4f\n", first, last);
  EXPECT_LT(last, first - 0.2);
  write_ids(tmp_.file("ids.safetensors"));
  auto r = run_oracle("train_oracle.py", "lora " + shell_quote(tmp_.file("base")) + " " +
                                             shell_quote(out + "/final") + " " +
                                             shell_quote(tmp_.file("ids.safetensors")) + " " +
                                             shell_quote(tmp_.file("peft.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto m = model::load_model(tmp_.file("base"), at::TensorOptions(at::kFloat));
  at::NoGradGuard no_grad;
  at::Tensor before = m->forward(ids());
  peft::load_lora_adapter(*m, out + "/final");
  at::Tensor ours = m->forward(ids());
  at::Tensor peft_logits = read_tensor(tmp_.file("peft.safetensors"), "logits");
  EXPECT_GT(max_abs_diff(before, peft_logits), 1e-2);  // the adapter changed something
  double diff = max_abs_diff(ours, peft_logits);
  std::printf("[train] lora adapter: max |logit diff| vs PEFT %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  expect_same_greedy("--model " + shell_quote(tmp_.file("base")) + " --adapter " +
                         shell_quote(out + "/final"),
                     tmp_.file("peft.safetensors"));
  // `ftune merge` folds the adapter in: transformers' logits of the merged model are PEFT's.
  auto merged = run_ftune("merge --model " + shell_quote(tmp_.file("base")) + " --adapter " +
                          shell_quote(out + "/final") + " --out " + shell_quote(tmp_.file("merged")));
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_NE(merged.output.find("merged 14 adapted projections"), std::string::npos) << merged.output;
  r = run_oracle("train_oracle.py", "full " + shell_quote(tmp_.file("merged")) + " " +
                                        shell_quote(tmp_.file("ids.safetensors")) + " " +
                                        shell_quote(tmp_.file("merged.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  double merged_diff = max_abs_diff(read_tensor(tmp_.file("merged.safetensors"), "logits"), peft_logits);
  std::printf("[train] merged: max |logit diff| transformers(merged) vs PEFT %.3g\n", merged_diff);
  EXPECT_LT(merged_diff, 1e-4);
}

// A run stopped at step 3 and resumed, on the same and on another number of ranks, gives the
// uninterrupted run's losses (float32, relative 1e-5): slices, optimizer state, step and the
// reader's place are all restored, and the data order does not depend on the world size.
TEST_F(TrainE2E, ResumeOnTheSameOrAnotherWorldSizeGivesTheSameLosses) {
  const std::string common = "--data.global_batch 12 --data.val_fraction 0 --train.steps 6 "
                             "--optim.lr 3e-3 --log.every 1 --train.micro_batch 0";
  auto whole = losses(train("full", common, 2, "whole"));
  ASSERT_EQ(whole.size(), 6u);
  for (int resume_np : {2, 3}) {
    const std::string name = "resumed-on-" + std::to_string(resume_np);
    train("full", common + " --train.stop_after 3", 2, name);
    EXPECT_TRUE(std::filesystem::exists(tmp_.file("run-" + name + "/checkpoints/step-000003/DONE")));
    EXPECT_FALSE(std::filesystem::exists(tmp_.file("run-" + name + "/final")));
    std::string out;
    train("full", common, resume_np, name, 0, &out);
    EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
    auto resumed = losses(tmp_.file("run-" + name));
    for (int64_t step = 1; step <= 6; ++step) {
      ASSERT_TRUE(resumed.count(step)) << name << " step " << step;
      EXPECT_NEAR(resumed[step], whole[step], 1e-5 * std::abs(whole[step])) << name << " step " << step;
    }
  }
  // The checkpoint fixes the sample order: a different sequence length is refused, by name.
  std::string out;
  train("full", common + " --data.seq_len 32", 2, "resumed-on-2", 1, &out);
  EXPECT_NE(out.find("data.seq_len was 64 in the checkpoint and is 32 now"), std::string::npos) << out;
}

// A rank killed while a checkpoint is written leaves the previous one as the latest, and
// `--resume auto` takes it.
TEST_F(TrainE2E, ACrashDuringACheckpointKeepsThePreviousOne) {
  const std::string common = "--data.global_batch 8 --data.val_fraction 0 --train.steps 6 "
                             "--checkpoint.every 2 --optim.lr 3e-3";
  setenv("FTUNE_FAULT_CHECKPOINT_STEP", "4", 1);  // inherited by mpirun's local ranks
  const std::string out = train("full", common, 2, "crash", 1);
  unsetenv("FTUNE_FAULT_CHECKPOINT_STEP");
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/step-000002/DONE"));
  EXPECT_FALSE(std::filesystem::exists(out + "/checkpoints/step-000004"));
  EXPECT_EQ(read_file(out + "/checkpoints/latest"), "step-000002\n");
  std::string log;
  train("full", common, 2, "crash", 0, &log);
  EXPECT_NE(log.find("checkpoints/step-000002 at step 2"), std::string::npos) << log;
  EXPECT_TRUE(std::filesystem::exists(out + "/final/config.json"));
}

TEST_F(TrainE2E, BadSettingsAreNamedBeforeAnyWork) {
  auto r = run_ftune("train --model.path " + shell_quote(tmp_.file("base")) + " --data.shards " +
                     shell_quote(tmp_.file("shards")) + " --method.name qlor");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("method.name = 'qlor' is not one of: full, lora, dora, qlora, ia3, prefix"), std::string::npos)
      << r.output;
  r = run_ftune("train --model.path " + shell_quote(tmp_.file("base")) + " --data.shards " +
                shell_quote(tmp_.file("shards")) + " --data.global_batch 8 --train.micro_batch 3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("train.micro_batch = 3 must divide"), std::string::npos) << r.output;
  r = run_ftune("train --model.path " + shell_quote(tmp_.file("base")) + " --data.shards " +
                shell_quote(tmp_.file("shards")) + " --seq-len 64 --method.name lora --lora.target_modules q_prj");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("did you mean 'q_proj'"), std::string::npos) << r.output;
  r = run_ftune("train --model " + shell_quote(tmp_.file("base")) + " --data " +
                shell_quote(tmp_.file("shards")) + " --seq-len 1024");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("data.seq_len = 1024 exceeds the model's max_position_embeddings = 512"),
            std::string::npos) << r.output;
  // Shards made with another tokenizer: here the same vocabulary, one byte changed.
  run_shell("cp -r " + shell_quote(tmp_.file("base")) + " " + shell_quote(tmp_.file("other")) +
            " && echo >> " + shell_quote(tmp_.file("other/tokenizer.json")));
  r = run_ftune("train --model " + shell_quote(tmp_.file("other")) + " --data " +
                shell_quote(tmp_.file("shards")) + " --seq-len 64");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("tokenizer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shard-000000-0000.h5"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
