#include "sharding/memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/text.h"

namespace ftune::sharding {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int64_t MemoryPlan::total() const {
  return params + master + optimizer + grads + gathered + activations + workspace;
}

std::string MemoryPlan::table() const {
  const std::pair<const char*, int64_t> rows[] = {
      {"parameters", params}, {"fp32 master", master}, {"optimizer state", optimizer},
      {"gradients", grads},   {"gathered units", gathered}, {"activations", activations},
      {"workspace", workspace}, {"total", total()}};
  std::string out;
  for (const auto& [name, bytes] : rows) {
    char line[96];
    std::snprintf(line, sizeof line, "  %-16s %12s\n", name, format_bytes(double(bytes)).c_str());
    out += line;
  }
  return out;
}

MemoryPlan plan_memory(const PlanInput& in) {
  if (in.world_size < 1)
    throw Error("memory plan: world size must be at least 1, got " + std::to_string(in.world_size));
  int64_t params = 0, trainable = 0, largest_unit = 0;
  for (const auto& u : in.units) {
    if (u.params < 0 || u.trainable_params < 0)
      throw Error("memory plan: unit '" + u.name + "' has a negative parameter count");
    params += u.params;
    trainable += u.trainable_params;
    largest_unit = std::max(largest_unit, u.params);
  }
  MemoryPlan plan;
  plan.activations = in.activation_bytes;
  plan.workspace = in.workspace_bytes;
  if (in.method == Method::full) {
    // Each rank owns 1/N of every flat unit (padded up to a multiple of N).
    int64_t shard = 0;
    for (const auto& u : in.units) shard += ceil_div(u.params, in.world_size);
    int64_t trainable_shard = ceil_div(trainable, in.world_size);
    plan.params = shard * in.param_bytes;
    plan.master = trainable_shard * in.master_bytes;
    plan.grads = trainable_shard * in.grad_bytes;
    plan.optimizer = trainable_shard * in.optim_bytes;
    // With one rank nothing is gathered: the shard is the whole unit.
    int64_t in_flight = in.world_size > 1 ? std::min<int64_t>(in.units_in_flight, in.units.size()) : 0;
    plan.gathered = in_flight * largest_unit * in.param_bytes;
  } else {
    plan.params = params * in.param_bytes;
    plan.master = trainable * in.master_bytes;
    plan.grads = trainable * in.grad_bytes;
    plan.optimizer = trainable * in.optim_bytes;
  }
  return plan;
}

}  // namespace ftune::sharding
