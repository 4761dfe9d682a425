// `ftune data tokenize` end to end: a reader thread cuts the inputs into numbered batches of
// records, N encoder threads render and tokenize them, and the calling thread writes the
// results to a ShardSetWriter in batch order -- so the shards are identical for any number of
// encoder threads.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <string>

#include "data/pipeline/render.h"
#include "data/pipeline/tokenize_config.h"

namespace ftune::data {

struct TokenizeSummary {
  int64_t files = 0;
  int64_t records = 0;  // non-blank lines (or whole .txt files) read
  int64_t documents = 0, tokens = 0, masked_tokens = 0, shards = 0;
  int64_t truncated = 0;
  int64_t segment_fallbacks = 0;  // documents whose mask came from per-segment encoding
  std::array<int64_t, kNumSkipReasons> skipped{};  // by SkipReason
  uint64_t input_bytes = 0;  // [bytes on disk]
  double seconds = 0;
  int encoder_threads = 0;

  int64_t skipped_total() const;
};

// Runs the command. Throws ftune::Error naming file:line for a bad record under
// on_error=fail, for an unreadable input, and on SIGINT/SIGTERM; shards finished by then stay
// (the set has no index.json, so it is not mistaken for a complete one). `log` gets the
// skipped-record messages; the progress bar goes to stderr.
TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, std::ostream& log);

std::string format_summary(const TokenizeSummary& s, const TokenizeConfig& cfg);

}  // namespace ftune::data
