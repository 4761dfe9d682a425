// `ftune data tokenize` end to end, on one process or on every rank of a job: the inputs are
// cut into work items (data/pipeline/work_plan.h), each rank makes its share with its encoder
// threads (item_pipeline.h) and writes one shard file or more per item, and rank 0 writes the
// index once every rank has finished. The set holds the same documents in the same order for
// any number of ranks and threads; an interrupted run continues with `resume`
// (data/pipeline/manifest.h).
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <string>

#include "common/error.h"
#include "data/pipeline/group.h"
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
  double seconds = 0;        // this run's
  int encoder_threads = 0;   // per rank
  int ranks = 1;
  int64_t items = 0, items_resumed = 0;  // work items in the plan; of them finished by earlier runs
  int64_t tokens_this_run = 0;
  uint64_t bytes_this_run = 0;  // [bytes on disk] of the items this run made
  bool already_complete = false;  // a resume found the set complete

  int64_t skipped_total() const;
};

// The job stopped on purpose: a signal, a bad record under on_error=fail, an unreadable input.
// Thrown on every rank; rank 0's message tells the whole story (which rank, what, that
// --resume continues), the other ranks' is empty, so that the job prints it once.
class TokenizeStopped : public Error {
 public:
  explicit TokenizeStopped(const std::string& what) : Error(what) {}
};

// Runs the command alone, as rank 0 of 1.
TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, std::ostream& log);

// Runs this rank's part; every rank of `group` calls it with the same configuration. Throws
// ftune::Error for bad settings or inputs (before any work), TokenizeStopped as above. Rank 0
// returns the whole set's summary and writes the skipped-record messages to `log`; the
// progress bar (rank 0) goes to stderr.
TokenizeSummary run_tokenize(const TokenizeConfig& cfg, const std::string& tool_version, Group& group,
                             std::ostream& log);

std::string format_summary(const TokenizeSummary& s, const TokenizeConfig& cfg);

}  // namespace ftune::data
