#include "runtime/memory_estimate.h"

#include <map>
#include <sstream>

#include "common/text.h"

namespace ftune::model {
namespace {

bool is_projection(const std::string& name) {
  return name.size() > 12 && name.compare(name.size() - 12, 12, "_proj.weight") == 0;
}

std::string figure(const sharding::MemoryPlan& p) {
  std::ostringstream os;
  os << format_bytes(double(p.total())) << " (weights " << format_bytes(double(p.params))
     << ", master " << format_bytes(double(p.master)) << ", AdamW " << format_bytes(double(p.optimizer))
     << ", grads " << format_bytes(double(p.grads));
  if (p.gathered > 0) os << ", gathered " << format_bytes(double(p.gathered));
  return os.str() + ")";
}

}  // namespace

std::vector<sharding::UnitSpec> unit_specs(const ModelConfig& cfg, int lora_rank) {
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
    else if (is_projection(p.name) && p.shape.size() == 2)
      u.trainable_params += int64_t(lora_rank) * (p.shape[0] + p.shape[1]);
  }
  return units;
}

std::string memory_summary(const ModelConfig& cfg) {
  std::ostringstream os;
  os << "memory per GPU before activations (bf16 weights, fp32 master, grads and AdamW moments):\n";
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
  return os.str();
}

}  // namespace ftune::model
