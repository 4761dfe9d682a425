// Tokenizer throughput: encodes a JSONL corpus ({"text": ...} per line) with ftune's tokenizer,
// single-threaded and on N threads, prints tokens/s, and writes the ids for comparison with
// the `tokenizers` library (bench_tokenizer.py runs both).
//
//   ftune_bench_tokenizer TOKENIZER CORPUS.jsonl THREADS IDS_OUT.bin
// IDS_OUT.bin: for each document, int32 count then the int32 ids (add_special_tokens=false).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "data/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> read_texts(const std::string& path) {
  std::vector<std::string> texts;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  }
  return texts;
}

// Encodes texts[begin, end) into ids[begin, end); returns the token count. Each thread takes
// a contiguous range so that threads do not write neighbouring vector headers.
size_t encode_range(const ftune::data::Tokenizer& tok, const std::vector<std::string>& texts,
                    size_t begin, size_t end, std::vector<std::vector<int32_t>>& ids) {
  size_t tokens = 0;
  for (size_t i = begin; i < end; ++i) {
    ids[i].clear();
    tok.encode_into(texts[i], false, ids[i]);
    tokens += ids[i].size();
  }
  return tokens;
}

// Best of `reps` wall times [s] for encoding everything on `threads` threads.
double time_encode(const ftune::data::Tokenizer& tok, const std::vector<std::string>& texts,
                   size_t threads, int reps, std::vector<std::vector<int32_t>>& ids, size_t& tokens) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    std::vector<size_t> counts(threads, 0);
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) {
      const size_t begin = texts.size() * t / threads, end = texts.size() * (t + 1) / threads;
      pool.emplace_back([&, t, begin, end] { counts[t] = encode_range(tok, texts, begin, end, ids); });
    }
    for (auto& th : pool) th.join();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    tokens = 0;
    for (size_t c : counts) tokens += c;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: ftune_bench_tokenizer TOKENIZER CORPUS.jsonl THREADS IDS_OUT.bin\n";
    return 2;
  }
  auto tok = ftune::data::Tokenizer::load(argv[1]);
  auto texts = read_texts(argv[2]);
  const size_t threads = std::stoul(argv[3]);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  std::vector<std::vector<int32_t>> ids(texts.size());
  size_t tokens = 0;
  // Best of three passes: ftune's and tokenizers' word caches both persist across calls, so
  // both sides are measured warm, as in a long data-preparation run.
  double t1 = time_encode(*tok, texts, 1, 3, ids, tokens);
  double tn = time_encode(*tok, texts, threads, 3, ids, tokens);
  std::printf("ftune  docs=%zu bytes=%zu tokens=%zu\n", texts.size(), bytes, tokens);
  std::printf("ftune  1 thread : %.3f s  %.0f tokens/s  %.1f MB/s\n", t1, tokens / t1, bytes / t1 / 1e6);
  std::printf("ftune  %zu threads: %.3f s  %.0f tokens/s  %.1f MB/s\n", threads, tn, tokens / tn, bytes / tn / 1e6);
  std::ofstream out(argv[4], std::ios::binary);
  for (const auto& v : ids) {
    int32_t n = int32_t(v.size());
    out.write(reinterpret_cast<const char*>(&n), 4);
    out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4));
  }
  return 0;
}
