// The one metrics sink: metrics.jsonl and TensorBoard (OUT/tb/) get the same record, so they
// never disagree. Rank 0 only.
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "runtime/train/tensorboard.h"

namespace ftune::train {

class MetricsLog {
 public:
  // Writes out_dir/metrics.jsonl and (with tensorboard) out_dir/tb/; "" = nothing (ranks
  // other than 0).
  MetricsLog(const std::string& out_dir, bool tensorboard);
  ~MetricsLog();
  // One JSON line {"step": step, key: value, ...} and one TensorBoard scalar per value.
  void write(int64_t step, const std::map<std::string, double>& values);

 private:
  std::FILE* file_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace ftune::train
