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

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

std::string str(int64_t v) { return std::to_string(v); }

void validate_sections(const TrainConfig& c) {
  require(!c.model.path.empty(), "model.path is empty: give the model directory (--model DIR)");
  require_choice("precision.compute", c.precision.compute, {"float32", "bfloat16"});
  require_choice("precision.reduce", c.precision.reduce, {"float32", "bfloat16"});
  require_choice("method.name", c.method.name, {"full", "lora", "dora", "qlora", "ia3", "prefix"});
  require_choice("method.shard", c.method.shard, {"auto", "sharded", "replicated"});
  require_choice("lora.bias", c.lora.bias, {"none", "all", "lora_only"});
  require_choice("optim.name", c.optim.name, {"adamw", "sgd"});
  require_choice("schedule.decay", c.schedule.decay, {"cosine", "linear", "constant"});
  require_choice("train.activation_checkpointing", c.train.activation_checkpointing, {"on", "off", "every_k"});
  require_choice("eval.metric", c.eval.metric, {"val_loss", "val_ppl", "val_acc"});
  require_choice("eval.export", c.eval.export_, {"last", "best"});
  require(c.train.epochs > 0 || c.train.steps > 0, "train.steps must be positive (got " + str(c.train.steps) +
                                            "), or set train.epochs");
  require(c.train.epochs >= 0, "train.epochs must be >= 0 (0: use train.steps)");
  require(c.train.activation_checkpointing_k >= 1, "train.activation_checkpointing_k must be at least 1");
  require(c.train.grad_clip >= 0, "train.grad_clip must be >= 0 (0 turns clipping off)");
  require(c.train.loss_chunk >= 1, "train.loss_chunk must be at least 1 token");
  require(c.train.max_skipped_steps >= 0, "train.max_skipped_steps must be >= 0");
  require(c.train.stop_after >= 0, "train.stop_after must be >= 0 (0: no limit)");
  require(c.lora.r >= 1, "lora.r must be at least 1 (got " + str(c.lora.r) + ")");
  require(c.lora.alpha > 0, "lora.alpha must be positive");
  require(c.lora.dropout >= 0 && c.lora.dropout < 1, "lora.dropout must be in [0, 1)");
  require(!c.lora.target_modules.empty(), "lora.target_modules is empty: name the projections, or all-linear");
  for (const auto& [name, r] : parse_pattern(c.lora.rank_pattern, "lora.rank_pattern"))
    require(r == std::floor(r), "lora.rank_pattern: the rank of " + name + " must be a whole number");
  parse_pattern(c.lora.alpha_pattern, "lora.alpha_pattern");
  require(c.prefix.num_virtual_tokens >= 1, "prefix.num_virtual_tokens must be at least 1 (got " +
                                                str(c.prefix.num_virtual_tokens) + ")");
  require(!c.ia3.target_modules.empty(), "ia3.target_modules is empty: name the projections");
  require(c.qlora.block >= 16 && (c.qlora.block & (c.qlora.block - 1)) == 0,
          "qlora.block = " + str(c.qlora.block) + " must be a power of two, at least 16 (bitsandbytes: 64)");
  require(c.optim.lr > 0, "optim.lr must be positive");
  require(c.optim.weight_decay >= 0, "optim.weight_decay must be >= 0");
  require(c.optim.beta1 >= 0 && c.optim.beta1 < 1 && c.optim.beta2 >= 0 && c.optim.beta2 < 1,
          "optim.beta1 and optim.beta2 must be in [0, 1)");
  require(c.optim.eps > 0, "optim.eps must be positive");
  require(c.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0");
  require(c.schedule.warmup_ratio >= 0 && c.schedule.warmup_ratio < 1, "schedule.warmup_ratio must be in [0, 1)");
  require(c.schedule.warmup_steps == 0 || c.schedule.warmup_ratio == 0,
          "set schedule.warmup_steps or schedule.warmup_ratio, not both");
  require(c.schedule.min_lr_ratio >= 0 && c.schedule.min_lr_ratio <= 1, "schedule.min_lr_ratio must be in [0, 1]");
  require(c.eval.every >= 0, "eval.every must be >= 0 (0: only at the start and the end)");
  require(c.eval.patience >= 0, "eval.patience must be >= 0 (0: no early stopping)");
  require(c.eval.min_delta >= 0, "eval.min_delta must be >= 0");
  require(c.checkpoint.every >= 0, "checkpoint.every must be >= 0 (0: only at the end)");
  require(c.checkpoint.keep >= 1, "checkpoint.keep must be at least 1");
  require(c.log.every >= 1, "log.every must be at least 1");
  require(c.log.time_every >= 0, "log.time_every must be >= 0 (0: never)");
}

// Rules across sections: what one setting asks of another.
void validate_across(const TrainConfig& c, int world_size) {
  const bool has_val = !c.data.val_shards.empty() || c.data.val_fraction > 0;
  require(has_val || c.eval.patience == 0,
          "eval.patience = " + str(c.eval.patience) + " needs a validation split: set data.val_fraction "
          "or data.val_shards, or eval.patience = 0");
  require(has_val || c.eval.export_ == "last",
          "eval.export = best needs a validation split: set data.val_fraction or data.val_shards");
  require(c.eval.patience == 0 || c.eval.every > 0,
          "eval.patience counts evaluations: set eval.every (steps between them)");
  require(c.method.name != "full" || c.method.shard == "auto",
          "method.shard = " + c.method.shard + " is for LoRA's frozen base; full fine-tuning always "
          "shards: remove method.shard");
  require(uses_lora(c.method.name) || c.lora.bias == "none",
          "lora.bias = " + c.lora.bias + " applies to method.name = lora, dora or qlora (full fine-tuning "
          "trains every bias)");
  require(c.method.adapter.empty() || c.method.name != "full",
          "method.adapter continues training an adapter: set method.name to lora, dora, qlora, ia3 or prefix");
  require(c.method.name != "qlora" || c.method.shard != "sharded",
          "method.shard = sharded: qlora's 4-bit base is held whole on every rank (0.5 bytes per "
          "weight); use method.shard = auto or replicated");
  require(!c.optim.offload || (c.method.name == "full" && c.optim.name == "adamw"),
          "optim.offload = true is for method.name = full with optim.name = adamw (LoRA's state is small)");
  const int64_t rows = c.data.global_batch / world_size;
  require(c.train.micro_batch >= 0 && (c.train.micro_batch == 0 || rows % c.train.micro_batch == 0),
          "train.micro_batch = " + str(c.train.micro_batch) + " must divide the " + str(rows) +
              " sequences each of the " + std::to_string(world_size) +
              " ranks gets of data.global_batch = " + str(c.data.global_batch));
}

}  // namespace

std::vector<std::pair<std::string, double>> parse_pattern(const std::vector<std::string>& items,
                                                          const std::string& key) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    double v = 0;
    size_t used = 0;
    try {
      if (eq != std::string::npos) v = std::stod(item.substr(eq + 1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (eq == std::string::npos || eq == 0 || used == 0 || used != item.size() - eq - 1 || !(v > 0))
      throw Error(key + ": '" + item + "' is not NAME=VALUE with a positive value (e.g. down_proj=4)");
    out.emplace_back(item.substr(0, eq), v);
  }
  return out;
}

bool uses_lora(const std::string& m) { return m == "lora" || m == "dora" || m == "qlora"; }

int64_t warmup_steps(const ScheduleSection& s, int64_t steps) {
  if (s.warmup_ratio > 0) return int64_t(std::ceil(s.warmup_ratio * double(steps)));
  return s.warmup_steps;
}

double learning_rate(const OptimSection& optim, const ScheduleSection& s, int64_t step,
                     int64_t steps) {
  const int64_t warmup = warmup_steps(s, steps);
  if (step < warmup) return optim.lr * double(step + 1) / double(warmup);
  const double min_lr = optim.lr * s.min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, steps - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(span));
  if (s.decay == "linear") return min_lr + (optim.lr - min_lr) * (1.0 - progress);
  if (s.decay == "cosine") return min_lr + (optim.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  return optim.lr;
}

bool improves(const EvalSection& eval, double value, std::optional<double> best) {
  if (!best) return true;
  if (eval.metric == "val_acc") return value > *best + eval.min_delta;
  return value < *best - eval.min_delta;
}

void validate(const TrainConfig& c, int world_size) {
  validate_sections(c);
  c.comm.validate();
  c.data.validate(world_size);
  validate_across(c, world_size);
}

}  // namespace ftune::train
