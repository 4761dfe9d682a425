// Reader benchmark: tokens per second that one rank's TokenShardReader serves (prefetch thread
// included), on a synthetic shard set or an existing one.
//
//   bench_reader                         # synthetic: 64M tokens, Llama-3 vocabulary (uint32)
//   bench_reader --dir /data/shards --seq-len 4096 --world 8 --global-batch 64
// Figures: bench/RESULTS.md, "Reader".
#include "data/reader/token_shard_reader.h"
#include "data/shards/shard_writer.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Documents of geometric-ish length (mean ~`mean_len`), random ids, a prompt mask on a third.
void write_synthetic(const std::string& dir, int64_t tokens, int64_t vocab, int64_t mean_len) {
  ftune::data::ShardSetInfo info;
  info.tokenizer_hash = "bench";
  info.vocab_size = vocab;
  info.with_loss_mask = true;
  info.tool_version = "bench_reader";
  ftune::data::ShardSetWriter writer(dir, info, 16 << 20);
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> length(1.0 / static_cast<double>(mean_len));
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  for (int64_t written = 0, d = 0; written < tokens; ++d) {
    auto n = static_cast<size_t>(1 + std::min<double>(length(rng), 8.0 * static_cast<double>(mean_len)));
    ids.resize(n);
    mask.assign(n, 1);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
    if (d % 3 == 0) std::fill(mask.begin(), mask.begin() + static_cast<std::ptrdiff_t>(n / 4), uint8_t{0});
    writer.add_document(ids.data(), n, mask.data());
    written += static_cast<int64_t>(n);
  }
  auto stats = writer.finish();
  std::printf("[bench] wrote %lld tokens, %lld documents, %lld shards to %s\n",
              static_cast<long long>(stats.tokens), static_cast<long long>(stats.documents),
              static_cast<long long>(stats.shards), dir.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"TokenShardReader throughput per rank"};
  std::string dir;
  int64_t tokens = 64 << 20, vocab = 128256, mean_len = 600, batches = 200;
  int world = 8;
  ftune::data::ReaderConfig cfg;
  cfg.global_batch = 32;
  app.add_option("--dir", dir, "shard set to read; written (synthetic) and kept when it has no index.json "
                 "(default: a synthetic set in a temp dir, removed afterwards)");
  app.add_option("--tokens", tokens, "synthetic set size")->capture_default_str();
  app.add_option("--vocab", vocab, "synthetic vocabulary size")->capture_default_str();
  app.add_option("--mean-doc-len", mean_len, "synthetic mean document length")->capture_default_str();
  app.add_option("--batches", batches, "batches to time")->capture_default_str();
  app.add_option("--world", world, "ranks; this process is rank 0")->capture_default_str();
  app.add_option("--global-batch", cfg.global_batch, "sequences per step")->capture_default_str();
  app.add_option("--seq-len", cfg.seq_len, "tokens per sequence")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string tmp;
  if (dir.empty()) {
    tmp = (std::filesystem::temp_directory_path() / ("ftune-bench-reader-" + std::to_string(getpid()))).string();
    dir = tmp;
  }
  if (!std::filesystem::exists(dir + "/index.json")) {
    auto t0 = Clock::now();
    write_synthetic(dir, tokens, vocab, mean_len);
    std::printf("[bench] writer: %.1f M tokens/s\n", static_cast<double>(tokens) / seconds_since(t0) / 1e6);
  }
  auto set = ftune::data::ShardSet::open(dir);
  for (const char* packing : {"concat", "pack"}) {
    cfg.packing = packing;
    auto t_open = Clock::now();
    ftune::data::TokenShardReader reader(set, cfg, ftune::data::Split::train, 0, world);
    double plan_s = seconds_since(t_open);
    reader.next();  // let the prefetch thread start
    auto t0 = Clock::now();
    int64_t served = 0, targets = 0;
    for (int64_t b = 0; b < batches; ++b) {
      auto batch = reader.next();
      served += batch.rows * batch.seq_len;
      targets += batch.target_tokens;
    }
    double s = seconds_since(t0);
    std::printf("[bench] %-6s seq_len %lld, %lld rows/rank (world %d): %.2f M tokens/s per rank "
                "(%.1f ms per batch, %.0f%% targets; epoch plan %.2f s)\n",
                packing, static_cast<long long>(cfg.seq_len), static_cast<long long>(cfg.global_batch / world),
                world, static_cast<double>(served) / s / 1e6, 1e3 * s / static_cast<double>(batches),
                100.0 * static_cast<double>(targets) / static_cast<double>(served), plan_s);
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return 0;
}
