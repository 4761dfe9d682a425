// A tiny model and token shards for launcher tests that run `ftune train` for a few steps:
// the byte-tokenizer tiny-llama3 preset and 400 short documents over a small vocabulary.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace ftune::test {

// Writes dir/base (model) and dir/shards; returns false (with a test failure) if either fails.
inline bool make_tiny_run(const TempDir& dir) {
  auto r = run_ftune("model init --model.preset tiny-llama3 --model.tokenizer byte --out " +
                     shell_quote(dir.file("base")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> words = {"the", "quick", "brown", "fox", "jumps", "over", "a",
                                          "lazy", "dog", "while", "cats", "sleep", "in", "sun"};
  std::mt19937 rng(3);
  {
    std::ofstream out(dir.file("corpus.jsonl"));
    for (int d = 0; d < 400; ++d) {
      std::string text;
      for (int w = 0, n = 5 + int(rng() % 25); w < n; ++w) text += (w ? " " : "") + words[rng() % words.size()];
      out << "{\"text\": \"" << text << "\"}\n";
    }
  }
  auto t = run_ftune("data tokenize --inputs " + shell_quote(dir.file("corpus.jsonl")) + " --output " +
                     shell_quote(dir.file("shards")) + " --tokenizer " + shell_quote(dir.file("base")));
  EXPECT_EQ(t.exit_code, 0) << t.output;
  return r.exit_code == 0 && t.exit_code == 0;
}

// The train flags of a tiny LoRA run writing to `out`.
inline std::string tiny_train_args(const TempDir& dir, const std::string& out, int steps) {
  return "train --model " + shell_quote(dir.file("base")) + " --data " + shell_quote(dir.file("shards")) +
         " --seq-len 64 --method.name lora --global-batch 8 --data.val_fraction 0 --optim.lr 1e-2 --steps " +
         std::to_string(steps) + " --out " + shell_quote(out);
}

// Training loss by step from metrics.jsonl, and how many lines each step has.
inline std::map<int64_t, double> metrics_losses(const std::string& out, std::map<int64_t, int>* lines = nullptr) {
  std::map<int64_t, double> by_step;
  std::istringstream in(read_file(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"loss\":") == std::string::npos) continue;
    const size_t s = line.find("\"step\":"), l = line.find("\"loss\":");
    const int64_t step = std::stoll(line.substr(s + 7));
    by_step[step] = std::stod(line.substr(l + 7));
    if (lines) ++(*lines)[step];
  }
  return by_step;
}

}  // namespace ftune::test
