#include "runtime/train/metrics.h"

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace ftune::train {

MetricsLog::MetricsLog(const std::string& out_dir, bool tensorboard) {
  if (out_dir.empty()) return;
  const std::string path = out_dir + "/metrics.jsonl";
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) throw Error("cannot open " + path + " for writing");
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>(out_dir + "/tb");
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::write(int64_t step, const std::map<std::string, double>& values) {
  if (file_ == nullptr) return;
  nlohmann::json j = {{"step", step}};
  for (const auto& [k, v] : values) {
    j[k] = v;
    if (tb_) tb_->scalar(k, v, step);
  }
  std::fprintf(file_, "%s\n", j.dump().c_str());
  std::fflush(file_);  // a killed run keeps every line written so far
  if (tb_) tb_->flush();
}

}  // namespace ftune::train
