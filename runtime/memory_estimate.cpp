#include "runtime/memory_estimate.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "common/error.h"
#include "common/text.h"

namespace ftune::model {
namespace {

const std::vector<std::string> kProjections = {"q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};

// "model.layers.3.mlp.up_proj.weight" -> "up_proj"; "" for anything that is not a projection.
std::string projection_of(const std::string& name) {
  const std::string suffix = "_proj.weight";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  const std::string stem = name.substr(0, name.size() - 7);  // without ".weight"
  return stem.substr(stem.rfind('.') + 1);                    // npos + 1 = 0: the whole stem
}

bool adapted(const std::string& projection, const std::vector<std::string>& targets) {
  if (projection.empty()) return false;
  if (targets.empty()) return true;
  for (const auto& t : targets)
    if (t == "all-linear" || t == projection) return true;
  return false;
}

std::string figure(const sharding::MemoryPlan& p) {
  std::ostringstream os;
  os << format_bytes(double(p.total())) << " (weights " << format_bytes(double(p.params + p.master))
     << ", AdamW " << format_bytes(double(p.optimizer)) << ", grads " << format_bytes(double(p.grads));
  if (p.gathered > 0) os << ", gathered " << format_bytes(double(p.gathered));
  if (p.grad_buffers > 0) os << ", grad buffers " << format_bytes(double(p.grad_buffers));
  return os.str() + ")";
}

}  // namespace

std::vector<sharding::UnitSpec> unit_specs(const ModelConfig& cfg, int lora_rank,
                                           const std::vector<std::string>& lora_targets) {
  for (const auto& t : lora_targets)
    if (t != "all-linear" && std::find(kProjections.begin(), kProjections.end(), t) == kProjections.end())
      throw Error("lora target '" + t + "' is not a projection: use q_proj, k_proj, v_proj, o_proj, "
                  "gate_proj, up_proj, down_proj or all-linear");
  std::vector<sharding::UnitSpec> units;
  std::map<std::string, size_t> index;
  for (const auto& p : parameter_shapes(cfg)) {
    std::string unit = unit_of(p.name);
    auto [it, added] = index.emplace(unit, units.size());
    if (added) units.push_back({unit, 0, 0});
    auto& u = units[it->second];
    u.params += p.numel();
    if (lora_rank == 0)
      u.trainable_params += p.numel();
    else if (p.shape.size() == 2 && adapted(projection_of(p.name), lora_targets))
      u.trainable_params += int64_t(lora_rank) * (p.shape[0] + p.shape[1]);
  }
  return units;
}

int64_t layer_activation_bytes_per_token(const ModelConfig& cfg, int a) {
  const int64_t h = cfg.hidden_size, q = cfg.q_dim(), kv = cfg.kv_dim(), inter = cfg.intermediate_size;
  // RMSNorm: x in fp32 (pow, mul), the normalised value in the compute dtype (weight *) and
  // the output that the projections save; in fp32 the casts are no-ops and share storage.
  const int64_t norm = a == 4 ? 2 * 4 * h : 4 * h + 2 * a * h;
  const int64_t attention = a * (q + 2 * kv   // q, k after RoPE and v: SDPA's saved inputs
                                 + q          // SDPA's output
                                 + q);        // its transposed copy, o_proj's input
  const int64_t lse = 4 * cfg.num_heads;      // SDPA's fp32 log-sum-exp per head
  const int64_t mlp = a * 4 * inter;          // gate, up, silu(gate), silu(gate) * up
  return 2 * norm + attention + lse + mlp;
}

int64_t activation_bytes(const ModelConfig& cfg, const ActivationInput& in) {
  const int64_t layers = cfg.num_layers;
  const int64_t full = in.tokens * layer_activation_bytes_per_token(cfg, in.compute_bytes);
  const int64_t boundary = in.tokens * cfg.hidden_size * in.compute_bytes;  // a recomputing layer's input
  int64_t recomputing = 0;
  if (in.checkpointing == Checkpointing::on) recomputing = layers;
  if (in.checkpointing == Checkpointing::every_k) recomputing = (layers + in.k - 1) / std::max<int64_t>(1, in.k);
  const int64_t kept = (layers - recomputing) * full + recomputing * boundary;
  const int64_t recompute_peak = recomputing > 0 ? full : 0;  // one layer rebuilt in backward
  // The final norm (as a layer's) and the embeddings' output (the first layer's input).
  const int64_t ends = in.tokens * (layers > 0 ? 2 * 4 * cfg.hidden_size : 0) + boundary;
  return kept + recompute_peak + ends;
}

int64_t loss_bytes(const ModelConfig& cfg, int64_t tokens, int64_t chunk, int a, bool head_trains) {
  const int64_t v = cfg.vocab_size, h = cfg.hidden_size;
  const int64_t c = std::min(std::max<int64_t>(1, chunk), std::max<int64_t>(1, tokens));
  const int64_t logits = c * v * (a + 4 + a);  // linear output, its fp32 copy, the cast gradient
  // fp32 accumulator and its cast to the weight dtype; none for a frozen head (LoRA)
  const int64_t head_grad = head_trains ? v * h * (4 + a) : 0;
  const int64_t hidden_grad = tokens * h * a;
  return logits + head_grad + hidden_grad;
}

std::string memory_summary(const ModelConfig& cfg) {
  std::ostringstream os;
  os << "memory per GPU before activations (bf16 compute, fp32 master, grads and AdamW moments):\n";
  for (int world : {1, 8, 64}) {
    sharding::PlanInput in;
    in.units = unit_specs(cfg);
    in.world_size = world;
    os << "  full, " << world << (world == 1 ? " GPU:  " : " GPUs: ") << (world < 10 ? " " : "")
       << figure(sharding::plan_memory(in)) << "\n";
  }
  sharding::PlanInput lora;
  lora.method = sharding::Method::lora;
  lora.units = unit_specs(cfg, 16);
  int64_t trainable = 0;
  for (const auto& u : lora.units) trainable += u.trainable_params;
  os << "  LoRA r16 on all projections (" << with_commas(trainable) << " trainable), any GPU count: "
     << figure(sharding::plan_memory(lora)) << "\n";
  os << "  (activations, loss and headroom for a given batch: ftune plan)\n";
  return os.str();
}

}  // namespace ftune::model
