// A full check of a shard set for `ftune data verify`: beyond what ShardSet::open checks, every
// token id and mask value is read, and the directory is compared with the index.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ftune::data {

struct VerifyReport {
  std::vector<std::string> problems;  // each names the file and what is wrong
  int64_t shards_checked = 0;
  int64_t tokens_checked = 0;
  bool ok() const { return problems.empty(); }
};

// Never throws for a bad set: every problem found goes into the report. `progress` (optional)
// is called with each shard's file name before it is scanned.
VerifyReport verify_shard_set(const std::string& dir,
                              const std::function<void(const std::string&)>& progress = {});

}  // namespace ftune::data
