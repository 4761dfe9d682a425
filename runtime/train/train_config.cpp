#include "runtime/train/train_config.h"

#include <cmath>

#include "common/error.h"

namespace ftune::train {
namespace {

void require_choice(const std::string& key, const std::string& value,
                    const std::vector<std::string>& choices) {
  for (const auto& c : choices)
    if (c == value) return;
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i) list += (i ? ", " : "") + choices[i];
  throw Error(key + " = '" + value + "' is not one of: " + list);
}

}  // namespace

double learning_rate(const OptimSection& optim, const ScheduleSection& s, int64_t step,
                     int64_t steps) {
  if (step < s.warmup_steps) return optim.lr * double(step + 1) / double(s.warmup_steps);
  const double min_lr = optim.lr * s.min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, steps - s.warmup_steps);
  const double progress = std::min(1.0, double(step - s.warmup_steps) / double(span));
  if (s.decay == "linear") return min_lr + (optim.lr - min_lr) * (1.0 - progress);
  if (s.decay == "cosine") return min_lr + (optim.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  return optim.lr;
}

void validate(const TrainConfig& c, int world_size) {
  if (c.model.path.empty()) throw Error("model.path is empty: give the model directory (--model.path DIR)");
  require_choice("model.dtype", c.model.dtype, {"float32", "bfloat16"});
  require_choice("method.name", c.method.name, {"full", "lora"});
  require_choice("method.shard", c.method.shard, {"auto", "sharded", "replicated"});
  require_choice("optim.name", c.optim.name, {"adamw", "sgd"});
  require_choice("schedule.decay", c.schedule.decay, {"cosine", "linear", "constant"});
  require_choice("train.activation_checkpointing", c.train.activation_checkpointing, {"on", "off"});
  if (c.train.steps <= 0) throw Error("train.steps must be positive (got " + std::to_string(c.train.steps) + ")");
  if (!(c.optim.lr > 0)) throw Error("optim.lr must be positive");
  if (c.schedule.warmup_steps < 0) throw Error("schedule.warmup_steps must be >= 0");
  c.data.validate(world_size);
  const int64_t rows = c.data.global_batch / world_size;
  if (c.train.micro_batch < 0 || (c.train.micro_batch > 0 && rows % c.train.micro_batch != 0))
    throw Error("train.micro_batch = " + std::to_string(c.train.micro_batch) + " must divide the " +
                std::to_string(rows) + " sequences each of the " + std::to_string(world_size) +
                " ranks gets of data.global_batch = " + std::to_string(c.data.global_batch));
}

}  // namespace ftune::train
