// `ftune train` beyond the plain loop, end to end under mpirun: biases trained beside LoRA
// (PEFT loads them), early stopping with the best checkpoint exported, activation
// checkpointing of every k-th layer, dropout that resumes exactly, and epochs.
#include <filesystem>

#include "runtime/peft/lora.h"
#include "tests/runtime/train_test_util.h"

namespace ftune::test {
namespace {

class TrainFeatures : public TrainE2E {
 protected:
  // A Qwen2-shaped base (q/k/v biases) with room for the byte tokenizer.
  void make_qwen2_base() {
    auto r = run_ftune("model init --model.preset tiny-qwen2 --model.config_only --out " + shell_quote(tmp_.file("q")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(tmp_.file("q/config.json"));
    nlohmann::json c = nlohmann::json::parse(in);
    c["vocab_size"] = 512;
    std::ofstream(tmp_.file("q/config.json")) << c.dump();
    r = run_ftune("model init --model.config " + shell_quote(tmp_.file("q/config.json")) +
                  " --model.tokenizer byte --out " + shell_quote(tmp_.file("qwen2")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  std::string bytes_of(const std::string& path) { return read_file(path); }
};

// lora.bias = all: the q/k/v biases train, are exported under PEFT's keys, and PEFT's logits of
// the export are ftune's; merge folds them in too.
TEST_F(TrainFeatures, LoraBiasesTrainAndPeftLoadsThem) {
  make_qwen2_base();
  base_ = "qwen2";
  const std::string out = train("lora", "--data.global_batch 8 --data.val_fraction 0.1 --train.steps 12 "
                                "--train.micro_batch 2 --optim.lr 1e-2 --lora.r 4 --lora.bias all "
                                "--lora.target_modules q_proj o_proj");
  auto file = st::SafetensorsFile::open(out + "/final/adapter_model.safetensors");
  const std::string layer = "base_model.model.model.layers.0.self_attn.";
  EXPECT_NE(file->find(layer + "q_proj.base_layer.bias"), nullptr) << "an adapted projection's bias";
  EXPECT_NE(file->find(layer + "k_proj.bias"), nullptr) << "a bias outside the adapters";
  write_ids(tmp_.file("ids.safetensors"));
  auto r = run_oracle("train_oracle.py", "lora " + shell_quote(tmp_.file("qwen2")) + " " + shell_quote(out + "/final") +
                                             " " + shell_quote(tmp_.file("ids.safetensors")) + " " +
                                             shell_quote(tmp_.file("peft.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto m = model::load_model(tmp_.file("qwen2"), at::TensorOptions(at::kFloat));
  at::NoGradGuard no_grad;
  const at::Tensor bias_before = m->find_linear("model.layers.0.self_attn.k_proj")->bias.clone();
  peft::load_lora_adapter(*m, out + "/final");
  EXPECT_GT((m->find_linear("model.layers.0.self_attn.k_proj")->bias - bias_before).abs().max().item<double>(), 1e-4)
      << "the bias trained and loaded";
  const double diff = max_abs_diff(m->forward(ids()), read_tensor(tmp_.file("peft.safetensors"), "logits"));
  std::printf("[train] lora + biases: max |logit diff| vs PEFT %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  expect_same_greedy("--model " + shell_quote(tmp_.file("qwen2")) + " --adapter " + shell_quote(out + "/final"),
                     tmp_.file("peft.safetensors"));
  auto merged = run_ftune("merge --model " + shell_quote(tmp_.file("qwen2")) + " --adapter " +
                          shell_quote(out + "/final") + " --out " + shell_quote(tmp_.file("merged")));
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  r = run_oracle("train_oracle.py", "full " + shell_quote(tmp_.file("merged")) + " " +
                                        shell_quote(tmp_.file("ids.safetensors")) + " " +
                                        shell_quote(tmp_.file("merged.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(max_abs_diff(read_tensor(tmp_.file("merged.safetensors"), "logits"),
                         read_tensor(tmp_.file("peft.safetensors"), "logits")), 1e-4);
}

// With a min_delta no step can beat, the first evaluation stays the best: the run stops after
// `patience` more, and final/ holds the adapter of the best step, byte for byte what a run of
// just that many steps exports (constant lr, so the steps are the same).
TEST_F(TrainFeatures, EarlyStoppingExportsTheBestCheckpoint) {
  const std::string common = "--data.global_batch 8 --data.val_fraction 0.1 --optim.lr 1e-2 "
                             "--schedule.decay constant --log.every 1 --checkpoint.keep 1 ";
  std::string log;
  const std::string out = train("lora", common + "--train.steps 40 --eval.every 2 --eval.patience 2 "
                                "--eval.min_delta 100 --eval.export best", 2, "early", 0, &log);
  EXPECT_NE(log.find("early stop after step 6: val_loss has not improved"), std::string::npos) << log;
  EXPECT_NE(log.find("exporting the best checkpoint: val_loss"), std::string::npos) << log;
  EXPECT_EQ(losses(out).rbegin()->first, 6) << "no step after the stop";
  EXPECT_EQ(read_file(out + "/checkpoints/best"), "step-000002\n");
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoints/step-000002/DONE")) << "kept beside keep = 1";
  const std::string two = train("lora", common + "--train.steps 2", 2, "two-steps");
  EXPECT_EQ(bytes_of(out + "/final/adapter_model.safetensors"), bytes_of(two + "/final/adapter_model.safetensors"));
}

// Recomputing every layer, every 2nd layer or none gives the same losses (float32).
TEST_F(TrainFeatures, ActivationCheckpointingEveryKGivesTheSameLosses) {
  const std::string common = "--data.global_batch 8 --data.val_fraction 0 --train.steps 3 --optim.lr 3e-3 "
                             "--log.every 1 --train.activation_checkpointing ";
  auto on = losses(train("full", common + "on", 2, "ac-on"));
  ASSERT_EQ(on.size(), 3u);
  for (const char* mode : {"every_k --train.activation_checkpointing_k 2", "off"}) {
    auto other = losses(train("full", common + mode, 2, std::string("ac-") + mode[0] + mode[1]));
    for (auto [step, loss] : on) EXPECT_NEAR(other[step], loss, 1e-5 * loss) << mode << " step " << step;
  }
}

// LoRA dropout draws from (seed, step, rank, micro-batch): a run stopped and resumed gives the
// uninterrupted run's losses, and another seed gives other ones.
TEST_F(TrainFeatures, DropoutResumesExactly) {
  const std::string common = "--data.global_batch 8 --data.val_fraction 0 --train.steps 6 --optim.lr 1e-2 "
                             "--lora.dropout 0.3 --log.every 1 --train.micro_batch 2 ";
  auto whole = losses(train("lora", common, 2, "drop-whole"));
  train("lora", common + "--train.stop_after 3", 2, "drop-resumed");
  auto resumed = losses(train("lora", common, 2, "drop-resumed"));
  ASSERT_EQ(whole.size(), 6u);
  for (auto [step, loss] : whole) EXPECT_NEAR(resumed[step], loss, 1e-6 * loss) << "step " << step;
  auto other = losses(train("lora", common + "--train.seed 5", 2, "drop-seed"));
  EXPECT_GT(std::abs(other[6] - whole[6]), 1e-7) << "the seed reaches the dropout masks";
}

// train.epochs sets the step count from the data: one pass over the training split.
TEST_F(TrainFeatures, EpochsSetTheStepCount) {
  std::string log;
  const std::string out = train("lora", "--data.global_batch 16 --data.val_fraction 0.5 --train.epochs 1 "
                                "--train.steps 1000 --log.every 1 --data.seq_len 128", 2, "epochs", 0, &log);
  const size_t at = log.find("1 epoch(s) of ");
  ASSERT_NE(at, std::string::npos) << log;
  const int64_t steps = std::atoll(log.c_str() + at + 14);
  EXPECT_GT(steps, 0);
  EXPECT_LT(steps, 1000);
  EXPECT_EQ(losses(out).rbegin()->first, steps);
}

}  // namespace
}  // namespace ftune::test
