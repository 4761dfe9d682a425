// The fixture of the `ftune train` end-to-end tests: a tiny model and a generated corpus
// tokenized by `ftune data tokenize`, runs under mpirun, and readers for what a run leaves.
#pragma once

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "runtime/checkpoint/safetensors.h"
#include "tests/runtime/model_test_util.h"
#include "tests/support/test_support.h"

namespace ftune::test {

using model::testing::max_abs_diff;
using model::testing::read_tensor;

// Sentences over a small vocabulary of words: learnable, so the loss can fall in 40 steps.
inline void write_corpus(const std::string& path) {
  const std::vector<std::string> words = {"the", "quick", "brown", "fox", "jumps", "over", "a",
                                          "lazy", "dog", "while", "cats", "sleep", "in", "sun"};
  std::mt19937 rng(3);
  std::ofstream out(path);
  for (int d = 0; d < 400; ++d) {
    std::string text;
    for (int w = 0, n = 5 + int(rng() % 25); w < n; ++w) text += (w ? " " : "") + words[rng() % words.size()];
    out << nlohmann::json{{"text", text}}.dump() << "\n";
  }
}

inline std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// 40 steps of 8 sequences with 10% of the documents held out.
constexpr const char* kLearn =
    "--data.global_batch 8 --data.val_fraction 0.1 --train.steps 40 --train.micro_batch 2";

class TrainE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    auto r = run_ftune("model init --model.preset tiny-llama3 --model.tokenizer byte --out " +
                       shell_quote(tmp_.file("base")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_corpus(tmp_.file("corpus.jsonl"));
    r = run_ftune("data tokenize --inputs " + shell_quote(tmp_.file("corpus.jsonl")) + " --output " +
                  shell_quote(tmp_.file("shards")) + " --tokenizer " + shell_quote(tmp_.file("base")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Runs `np` ranks; returns the run directory.
  std::string train(const std::string& method, const std::string& extra, int np = 2,
                    const std::string& name = "", int expect_exit = 0, std::string* output = nullptr) {
    const std::string out = tmp_.file("run-" + (name.empty() ? method : name));
    std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                      "mpirun --oversubscribe --bind-to none -np " + std::to_string(np) + " " +
                      shell_quote(ftune_binary()) +
                      " train --model.path " + shell_quote(tmp_.file(base_)) + " --data.shards " +
                      shell_quote(tmp_.file("shards")) +
                      (extra.find("--data.seq_len") == std::string::npos ? " --data.seq_len 64" : "") +
                      " --method.name " + method + " --train.out " + shell_quote(out) + " " + extra;
    auto r = run_shell(cmd);
    if (expect_exit == 0) {
      EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
      EXPECT_NE(r.output.find("[comm] rank 1/" + std::to_string(np)), std::string::npos) << r.output;
    } else {
      EXPECT_NE(r.exit_code, 0) << cmd << "\n" << r.output;
    }
    if (output) *output = r.output;
    return out;
  }

  // Training loss by step, from the last line logged for each step.
  std::map<int64_t, double> losses(const std::string& out) {
    std::map<int64_t, double> by_step;
    for (const auto& j : read_metrics(out + "/metrics.jsonl"))
      if (j.contains("loss")) by_step[j["step"].get<int64_t>()] = j["loss"].get<double>();
    return by_step;
  }

  // The first and last validation losses of a run.
  std::pair<double, double> val_losses(const std::string& out) {
    double first = -1, last = -1;
    for (const auto& j : read_metrics(out + "/metrics.jsonl")) {
      if (!j.contains("val_loss")) continue;
      if (first < 0) first = j["val_loss"].get<double>();
      last = j["val_loss"].get<double>();
      EXPECT_NEAR(j["val_ppl"].get<double>(), std::exp(last), 1e-6 * std::exp(last));
    }
    return {first, last};
  }

  at::Tensor ids() {
    at::manual_seed(11);
    return at::randint(3, 258, {2, 20}, at::kLong);
  }

  void write_ids(const std::string& path) {
    at::Tensor t = ids();
    st::write_file(path, {{"ids", st::DType::I64, {2, 20}, t.data_ptr()}});
  }

  // TensorBoard (the tensorboard package) reads the same scalars as metrics.jsonl holds.
  void expect_tensorboard_matches_metrics(const std::string& out) {
    auto r = run_oracle("train_oracle.py", "tb " + shell_quote(out + "/tb"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto tb = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    size_t compared = 0;
    for (const auto& line : read_metrics(out + "/metrics.jsonl")) {
      for (const char* tag : {"loss", "lr", "val_loss", "val_acc"}) {
        if (!line.contains(tag)) continue;
        ASSERT_TRUE(tb.contains(tag)) << tag << ": " << r.output;
        bool found = false;
        for (const auto& point : tb[tag])
          if (point[0] == line["step"]) {
            const double want = line[tag].get<double>();
            EXPECT_NEAR(point[1].get<double>(), want, 1e-6 * std::max(1.0, std::abs(want))) << tag;
            found = true;
          }
        EXPECT_TRUE(found) << tag << " at step " << line["step"];
        ++compared;
      }
    }
    EXPECT_GT(compared, 10u);
  }

  // `ftune generate` (greedy, 16 tokens after the first 5 ids of row 0) gives the reference's ids.
  void expect_same_greedy(const std::string& model_args, const std::string& reference) {
    at::Tensor prompt = ids().narrow(1, 0, 5)[0];
    std::string list;
    for (int64_t i = 0; i < 5; ++i) list += (i ? "," : "") + std::to_string(prompt[i].item<int64_t>());
    auto r = run_ftune("generate " + model_args + " --prompt-ids " + list +
                       " --max-new-tokens 16 --greedy --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    at::Tensor want = read_tensor(reference, "greedy");
    std::vector<int64_t> expected(want.data_ptr<int64_t>(), want.data_ptr<int64_t>() + want.numel());
    EXPECT_EQ(j["ids"].get<std::vector<int64_t>>(), expected) << r.output;
  }

  TempDir tmp_;
  std::string base_ = "base";  // the model train() fine-tunes
};

}  // namespace ftune::test
