#include "runtime/train/fit_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/text.h"

namespace ftune::train {
namespace {

// [bytes/element] NF4 with double quantisation (QLoRA): 4 bits, an 8-bit absmax per 64
// weights, an fp32 scale per 256 absmaxes.
constexpr double kNf4Bytes = 0.5 + 1.0 / 64 + 4.0 / (64 * 256);
// CUDA context, cuBLAS and NCCL workspaces: device memory the caching allocator never sees.
constexpr int64_t kFixedOverhead = int64_t(1) << 30;
// What the caching allocator loses to fragmentation, as a fraction of what it hands out
// (PyTorch runs typically reserve 3-10% above max_memory_allocated).
constexpr double kFragmentation = 0.05;

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

void require_choice(const std::string& flag, const std::string& v, const std::vector<std::string>& choices) {
  for (const auto& c : choices)
    if (c == v) return;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  throw Error(flag + " = '" + v + "' is not one of: " + list);
}

void check(const PlanOptions& o) {
  require_choice("--method", o.method, {"full", "lora", "qlora"});
  require_choice("--shard", o.shard, {"auto", "replicated", "sharded"});
  require_choice("--optimizer", o.optimizer, {"adamw", "sgd"});
  require_choice("--activation-checkpointing", o.activation_checkpointing, {"on", "off", "every_k"});
  require_choice("--compute", o.compute, {"bfloat16", "float32"});
  require_choice("--reduce", o.reduce, {"bfloat16", "float32"});
  require(o.gpus >= 1, "--gpus must be at least 1 (got " + std::to_string(o.gpus) + ")");
  require(o.gpus_per_node >= 1, "--gpus-per-node must be at least 1");
  require(o.gpu_memory_gb > 0, "--gpu-memory-gb must be positive (80 for an H100, 141 for an H200)");
  require(o.host_memory_gb >= 0, "--host-memory-gb must be >= 0 (0: not checked)");
  require(o.micro_batch >= 1, "--micro-batch must be at least 1 sequence");
  require(o.seq_len >= 1, "--seq-len must be at least 1 token");
  require(o.activation_checkpointing_k >= 1, "--activation-checkpointing-k must be at least 1");
  require(o.loss_chunk >= 1, "--loss-chunk must be at least 1 token");
  require(o.lora_r >= 1, "--lora-r must be at least 1");
  require(!o.offload || o.method == "full", "--offload applies to --method full (LoRA's state is small)");
  require(o.method != "full" || o.shard == "auto", "--shard is for LoRA's frozen base; full fine-tuning always shards");
}

int dtype_bytes_of(const std::string& dtype) { return dtype == "float32" ? 4 : 2; }

bool lora(const PlanOptions& o) { return o.method != "full"; }

model::Checkpointing checkpointing_of(const std::string& mode) {
  if (mode == "off") return model::Checkpointing::off;
  if (mode == "every_k") return model::Checkpointing::every_k;
  return model::Checkpointing::on;
}

// [bytes/element] of the stored base with NF4 projections (embeddings, norms and head stay in
// the compute dtype, as QLoRA keeps them).
double nf4_base_bytes(const model::ModelConfig& cfg, int compute_bytes) {
  int64_t total = 0, quantised = 0;
  for (const auto& p : model::parameter_shapes(cfg)) {
    total += p.numel();
    const bool proj = p.name.find("_proj.weight") != std::string::npos && p.shape.size() == 2;
    if (proj) quantised += p.numel();
  }
  return (double(quantised) * kNf4Bytes + double(total - quantised) * compute_bytes) / double(total);
}

sharding::PlanInput plan_input(const model::ModelConfig& cfg, const PlanOptions& o) {
  sharding::PlanInput in;
  const int a = dtype_bytes_of(o.compute);
  in.units = model::unit_specs(cfg, lora(o) ? int(o.lora_r) : 0, o.lora_targets);
  in.method = lora(o) ? sharding::Method::lora : sharding::Method::full;
  in.world_size = int(o.gpus);
  in.frozen_sharded = lora(o) && o.shard == "sharded";
  in.offload_optimizer = o.offload;
  in.param_bytes = a;
  if (o.method == "qlora") in.frozen_bytes = nf4_base_bytes(cfg, a);
  in.optim_bytes = o.optimizer == "sgd" ? 4 : 8;
  in.reduce_bytes = dtype_bytes_of(o.reduce);
  const int64_t tokens = o.micro_batch * o.seq_len;
  in.activation_bytes = model::activation_bytes(
      cfg, {tokens, a, checkpointing_of(o.activation_checkpointing), o.activation_checkpointing_k});
  in.loss_bytes = model::loss_bytes(cfg, tokens, o.loss_chunk, a, /*head_trains=*/!lora(o));
  in.fixed_overhead_bytes = kFixedOverhead;
  in.fragmentation = kFragmentation;
  return in;
}

int64_t capacity_of(const PlanOptions& o) { return int64_t(o.gpu_memory_gb * 1e9); }

struct Evaluated {
  sharding::MemoryPlan memory;
  int64_t host_per_node = 0;
  bool fits = false;
};

Evaluated evaluate(const model::ModelConfig& cfg, const PlanOptions& o) {
  Evaluated e;
  e.memory = sharding::plan_memory(plan_input(cfg, o));
  e.host_per_node = e.memory.host * std::min(o.gpus, o.gpus_per_node);
  const bool host_ok = o.host_memory_gb <= 0 || double(e.host_per_node) <= o.host_memory_gb * 1e9;
  e.fits = e.memory.total() <= capacity_of(o) && host_ok;
  return e;
}

using Candidate = std::pair<PlanOptions, Suggestion>;
using Fits = std::function<Evaluated(const PlanOptions&)>;

std::string str(int64_t v) { return std::to_string(v); }

// The largest micro-batch below the current one that fits (1 if none does): the same global
// batch in more accumulation steps.
std::optional<Candidate> smaller_micro_batch(const PlanOptions& o, const Fits& eval) {
  if (o.micro_batch <= 1) return std::nullopt;
  PlanOptions c = o;
  for (int64_t m = o.micro_batch / 2; m >= 1; m /= 2) {
    c.micro_batch = m;
    if (eval(c).fits || m == 1) break;
  }
  return Candidate{c, {"micro-batch " + str(c.micro_batch) + " with " + str(o.micro_batch / c.micro_batch) +
                           "x the accumulation steps (the same global batch)",
                       "--micro-batch " + str(c.micro_batch), "train.micro_batch = " + str(c.micro_batch)}};
}

// From off, the sparsest every_k that fits; else every layer.
std::optional<Candidate> more_checkpointing(const PlanOptions& o, const Fits& eval) {
  if (o.activation_checkpointing == "on") return std::nullopt;
  PlanOptions c = o;
  c.activation_checkpointing = "every_k";
  for (int64_t k : {4, 3, 2}) {
    if (o.activation_checkpointing == "every_k" && k >= o.activation_checkpointing_k) continue;
    c.activation_checkpointing_k = k;
    if (eval(c).fits)
      return Candidate{c, {"activation checkpointing on every " + str(k) + "th layer",
                           "--activation-checkpointing every_k --activation-checkpointing-k " + str(k),
                           "train.activation_checkpointing = \"every_k\", train.activation_checkpointing_k = " +
                               str(k)}};
  }
  c.activation_checkpointing = "on";
  return Candidate{c, {"activation checkpointing on every layer", "--activation-checkpointing on",
                       "train.activation_checkpointing = \"on\""}};
}

std::optional<Candidate> offload(const PlanOptions& o) {
  if (o.method != "full" || o.offload) return std::nullopt;
  PlanOptions c = o;
  c.offload = true;
  return Candidate{c, {"AdamW moments and a master copy in host memory, the update on the CPU", "--offload",
                       "optim.offload = true"}};
}

std::optional<Candidate> sharded_base(const PlanOptions& o) {
  if (!lora(o) || o.shard == "sharded" || o.gpus < 2) return std::nullopt;
  PlanOptions c = o;
  c.shard = "sharded";
  return Candidate{c, {"shard the frozen base over the " + str(o.gpus) + " GPUs", "--shard sharded",
                       "method.shard = \"sharded\""}};
}

std::optional<Candidate> four_bit_base(const PlanOptions& o) {
  if (o.method == "qlora") return std::nullopt;
  PlanOptions c = o;
  c.method = "qlora";
  c.offload = false;
  Suggestion s{"QLoRA: LoRA on a 4-bit NF4 base (another method: adapters on a frozen base)",
               "--method qlora", "method.name = \"qlora\"", false};
  return Candidate{c, s};
}

// The smallest GPU count, in whole nodes, that fits (up to 1024 nodes); only where adding GPUs
// divides the state (full fine-tuning, a sharded LoRA base).
std::optional<Candidate> more_gpus(const PlanOptions& o, const Fits& eval) {
  if (lora(o) && o.shard != "sharded") return std::nullopt;
  PlanOptions c = o;
  for (int64_t nodes = 1; nodes <= 1024; nodes *= 2) {
    c.gpus = nodes * o.gpus_per_node;
    if (c.gpus <= o.gpus) continue;
    if (eval(c).fits)
      return Candidate{c, {str(c.gpus) + " GPUs (" + str(nodes) + (nodes == 1 ? " node)" : " nodes)"),
                           "--gpus " + str(c.gpus), "(launch " + str(c.gpus) + " ranks)"}};
  }
  return std::nullopt;
}

std::vector<Suggestion> suggest(const model::ModelConfig& cfg, const PlanOptions& o, int64_t current) {
  const Fits eval = [&](const PlanOptions& c) { return evaluate(cfg, c); };
  std::vector<Candidate> singles;
  for (auto c : {smaller_micro_batch(o, eval), more_checkpointing(o, eval), offload(o), sharded_base(o),
                 four_bit_base(o), more_gpus(o, eval)})
    if (c) singles.push_back(*c);
  std::vector<Suggestion> out;
  bool any_fits = false;
  for (auto& [opts, s] : singles) {
    const Evaluated e = eval(opts);
    s.total = e.memory.total();
    s.fits = e.fits;
    any_fits = any_fits || s.fits;
    if (s.total < current) out.push_back(s);  // only what helps
  }
  if (any_fits) return out;
  // Nothing alone is enough: every saving that keeps the method at once (then more GPUs on top).
  PlanOptions all = o;
  std::string change, flag, key;
  for (auto& [opts, s] : singles) {
    if (!s.same_method || s.flag.rfind("--gpus", 0) == 0) continue;
    all.micro_batch = std::min(all.micro_batch, opts.micro_batch);
    if (opts.activation_checkpointing == "on") all.activation_checkpointing = "on";
    all.offload = all.offload || opts.offload;
    if (opts.shard == "sharded") all.shard = "sharded";
    change += (change.empty() ? "" : "; ") + s.change;
    flag += (flag.empty() ? "" : " ") + s.flag;
    key += (key.empty() ? "" : "; ") + s.key;
  }
  if (change.empty()) return out;
  const Evaluated e = eval(all);
  out.push_back({"all of: " + change, flag, key, true, e.memory.total(), e.fits});
  if (!e.fits)
    if (auto g = more_gpus(all, eval)) {
      const Evaluated ge = eval(g->first);
      out.push_back({"all of the above and " + g->second.change, flag + " " + g->second.flag,
                     key + "; " + g->second.key, true, ge.memory.total(), ge.fits});
    }
  return out;
}

std::string gib(int64_t bytes) { return format_bytes(double(bytes)); }

std::string method_words(const PlanOptions& o) {
  if (o.method == "full") return std::string("full fine-tune") + (o.offload ? " with optimizer offload" : "");
  std::string base = o.method == "qlora" ? "NF4" : o.compute == "float32" ? "fp32" : "bf16";
  return (o.method == "qlora" ? "QLoRA" : "LoRA") + std::string(" r") + str(o.lora_r) + " (" +
         str(int64_t(o.lora_targets.size())) + " target(s)), " + base + " base " +
         (o.shard == "sharded" ? "sharded" : "replicated");
}

std::string checkpointing_words(const PlanOptions& o) {
  if (o.activation_checkpointing == "every_k") return "every " + str(o.activation_checkpointing_k) + "th layer";
  return o.activation_checkpointing;
}

}  // namespace

model::ModelConfig plan_model(const PlanOptions& o) {
  if (o.model.empty() == o.preset.empty())
    throw Error("plan: give the model once, as --model DIR (config.json) or --preset NAME (" +
                [] {
                  std::string s;
                  for (const auto& n : model::preset_names())
                    if (n.rfind("llama-3", 0) == 0) s += (s.empty() ? "" : ", ") + n;
                  return s;
                }() + ")");
  return o.preset.empty() ? model::load_model_dir_config(o.model) : model::preset(o.preset);
}

PlanResult plan_run(const model::ModelConfig& cfg, const PlanOptions& o) {
  check(o);
  PlanResult r;
  r.model = o.preset.empty() ? o.model : o.preset;
  r.options = o;
  const Evaluated e = evaluate(cfg, o);
  r.memory = e.memory;
  r.capacity = capacity_of(o);
  r.host_per_node = e.host_per_node;
  r.fits = e.fits;
  if (!r.fits) r.suggestions = suggest(cfg, o, r.memory.total());
  return r;
}

PlanOptions plan_options(const TrainConfig& cfg, int world, int per_node, int64_t gpu_bytes) {
  PlanOptions o;
  o.model = cfg.model.path;
  o.method = cfg.method.name;
  o.shard = cfg.method.shard;
  o.optimizer = cfg.optim.name;
  o.offload = cfg.optim.offload;
  o.gpus = world;
  o.gpus_per_node = std::max(1, per_node);
  o.gpu_memory_gb = double(gpu_bytes) / 1e9;
  o.micro_batch = cfg.train.micro_batch > 0 ? cfg.train.micro_batch : cfg.data.global_batch / std::max(1, world);
  o.seq_len = cfg.data.seq_len;
  o.activation_checkpointing = cfg.train.activation_checkpointing;
  o.activation_checkpointing_k = cfg.train.activation_checkpointing_k;
  o.compute = cfg.precision.compute;
  o.reduce = cfg.precision.reduce;
  o.loss_chunk = cfg.train.loss_chunk;
  o.lora_r = cfg.lora.r;
  o.lora_targets = cfg.lora.target_modules;
  return o;
}

std::string plan_text(const PlanResult& r) {
  const PlanOptions& o = r.options;
  std::ostringstream os;
  os << "plan: " << r.model << ", " << method_words(o) << ", " << o.gpus << " GPU(s) (" << o.gpus_per_node
     << " per node) of " << o.gpu_memory_gb << " GB\n";
  os << "  micro-batch " << o.micro_batch << " x " << o.seq_len << " tokens, activation checkpointing "
     << checkpointing_words(o) << ", " << o.compute << " compute, " << o.reduce << " reduce, " << o.optimizer
     << ", loss chunk " << o.loss_chunk << "\n";
  os << "per GPU:\n" << r.memory.table();
  if (r.host_per_node > 0) os << "  host memory per node: " << gib(r.host_per_node) << "\n";
  os << (r.fits ? "fits: " : "does not fit: ") << gib(r.memory.total()) << " of " << gib(r.capacity) << " per GPU\n";
  if (!r.suggestions.empty()) os << "changes that lower it:\n";
  for (const auto& s : r.suggestions)
    os << "  - " << s.change << ": " << gib(s.total) << (s.fits ? " (fits)" : " (still too much)") << "\n"
       << "      " << s.flag << "   |   " << s.key << "\n";
  return os.str();
}

nlohmann::json plan_json(const PlanResult& r) {
  const auto& m = r.memory;
  nlohmann::json breakdown = {{"params", m.params}, {"master", m.master}, {"optimizer", m.optimizer},
                              {"grads", m.grads}, {"gathered", m.gathered}, {"grad_buffers", m.grad_buffers},
                              {"activations", m.activations}, {"loss", m.loss}, {"workspace", m.workspace},
                              {"headroom", m.headroom}};
  nlohmann::json suggestions = nlohmann::json::array();
  for (const auto& s : r.suggestions)
    suggestions.push_back({{"change", s.change}, {"flag", s.flag}, {"key", s.key}, {"same_method", s.same_method},
                           {"total_bytes", s.total}, {"fits", s.fits}});
  const PlanOptions& o = r.options;
  return {{"model", r.model},
          {"method", o.method},
          {"gpus", o.gpus},
          {"gpus_per_node", o.gpus_per_node},
          {"micro_batch", o.micro_batch},
          {"seq_len", o.seq_len},
          {"activation_checkpointing", o.activation_checkpointing},
          {"offload", o.offload},
          {"fits", r.fits},
          {"gpu_memory_bytes", r.capacity},
          {"total_bytes", m.total()},
          {"allocated_bytes", m.allocated()},
          {"breakdown", breakdown},
          {"host_bytes_per_rank", m.host},
          {"host_bytes_per_node", r.host_per_node},
          {"suggestions", suggestions}};
}

}  // namespace ftune::train
