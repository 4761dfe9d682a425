// The one metrics sink: the progress line and metrics.jsonl read the same record, so they never
// disagree. Rank 0 only.
#pragma once

#include <cstdio>
#include <map>
#include <string>

namespace ftune::train {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // "" = no file (ranks other than 0)
  ~MetricsLog();
  // One JSON line {"step": step, key: value, ...}; the progress line shows `line`.
  void write(int64_t step, const std::map<std::string, double>& values);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace ftune::train
