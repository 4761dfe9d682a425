#include "sharding/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "common/text.h"

namespace ftune::sharding {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Counts {
  int64_t params = 0, trainable = 0, largest = 0, largest_trainable = 0;
  int64_t shard = 0;            // [elements] sum over units of ceil(params / world)
  int64_t trainable_shard = 0;  // [elements] sum over units of ceil(trainable / world)
  int64_t largest_trainable_shard = 0;
};

Counts count(const PlanInput& in) {
  Counts c;
  for (const auto& u : in.units) {
    if (u.params < 0 || u.trainable_params < 0)
      throw Error("memory plan: unit '" + u.name + "' has a negative parameter count");
    c.params += u.params;
    c.trainable += u.trainable_params;
    c.largest = std::max(c.largest, u.params);
    c.largest_trainable = std::max(c.largest_trainable, u.trainable_params);
    c.shard += ceil_div(u.params, in.world_size);
    c.trainable_shard += ceil_div(u.trainable_params, in.world_size);
    c.largest_trainable_shard = std::max(c.largest_trainable_shard, ceil_div(u.trainable_params, in.world_size));
  }
  return c;
}

// Full fine-tuning: everything trainable is sliced; the unit is gathered from the slice.
void plan_full(const PlanInput& in, const Counts& c, MemoryPlan& p) {
  const int64_t state = c.trainable_shard;
  p.grads = state * in.grad_bytes;
  if (in.offload_optimizer) {
    // sharding/offload.h: the host holds a master copy, both moments and a staging buffer for
    // the gradient slice; the GPU keeps the engine's fp32 slice (gathered from, checkpointed).
    p.params = state * in.master_bytes;
    p.host = state * (in.master_bytes + in.optim_bytes + in.grad_bytes);
  } else {
    p.master = state * in.master_bytes;
    p.optimizer = state * in.optim_bytes;
  }
  // One rank computing in the master's dtype runs on the slice itself: nothing gathered and
  // gradients are added in place (EngineOptions::resident_when_alone).
  const bool resident = in.world_size == 1 && in.param_bytes == in.master_bytes;
  if (resident) {
    p.grad_buffers = c.largest * in.param_bytes;  // autograd's gradients of the unit's tensors
    return;
  }
  const int64_t in_flight = std::min<int64_t>(in.units_in_flight, int64_t(in.units.size()));
  p.gathered = in_flight * c.largest * in.param_bytes;
  // Autograd's per-tensor gradients (compute dtype) beside the flat buffer they are copied
  // into for the reduce-scatter (reduce dtype).
  p.grad_buffers = c.largest * (in.param_bytes + in.reduce_bytes);
}

// LoRA: the frozen base replicated or sliced; adapters whole on every rank.
void plan_lora(const PlanInput& in, const Counts& c, MemoryPlan& p) {
  const double frozen = in.frozen_bytes > 0 ? in.frozen_bytes : double(in.param_bytes);
  if (in.frozen_sharded) {
    p.params = int64_t(std::ceil(double(c.shard) * frozen));
    if (in.world_size > 1) {
      const int64_t in_flight = std::min<int64_t>(in.units_in_flight, int64_t(in.units.size()));
      p.gathered = in_flight * c.largest * in.param_bytes;
    }
  } else {
    p.params = int64_t(std::ceil(double(c.params) * frozen));
    // A quantised base is dequantised one unit at a time for compute.
    if (in.frozen_bytes > 0 && in.frozen_bytes != in.param_bytes) p.gathered = c.largest * in.param_bytes;
  }
  p.master = c.trainable * in.master_bytes;
  p.grads = c.trainable * in.grad_bytes;
  p.optimizer = c.trainable * in.optim_bytes;
  p.grad_buffers = c.trainable * in.reduce_bytes;  // the all-reduce bucket of adapter gradients
}

}  // namespace

int64_t MemoryPlan::allocated() const {
  return params + master + optimizer + grads + gathered + grad_buffers + activations + loss + workspace;
}

int64_t MemoryPlan::total() const { return allocated() + headroom; }

std::vector<std::pair<std::string, int64_t>> MemoryPlan::rows() const {
  const bool lora = method == Method::lora;
  std::vector<std::pair<std::string, int64_t>> r = {
      {lora ? "frozen base" : "parameter slice", params},
      {lora ? "adapters (fp32)" : "fp32 master", master},
      {"optimizer state", optimizer},
      {lora ? "adapter gradients" : "gradient slice", grads},
      {"gathered units", gathered},
      {"gradient buffers", grad_buffers},
      {"activations", activations},
      {"loss chunks", loss},
  };
  if (workspace > 0) r.emplace_back("workspace", workspace);
  r.emplace_back("headroom", headroom);
  r.emplace_back("total", total());
  return r;
}

std::string MemoryPlan::table() const {
  std::string out;
  for (const auto& [name, bytes] : rows()) {
    char line[96];
    std::snprintf(line, sizeof line, "  %-18s %12s\n", name.c_str(), format_bytes(double(bytes)).c_str());
    out += line;
  }
  if (host > 0) out += "  (host, per rank: " + format_bytes(double(host)) + ")\n";
  return out;
}

MemoryPlan plan_memory(const PlanInput& in) {
  if (in.world_size < 1)
    throw Error("memory plan: world size must be at least 1, got " + std::to_string(in.world_size));
  const Counts c = count(in);
  MemoryPlan plan;
  plan.method = in.method;
  if (in.method == Method::full) plan_full(in, c, plan);
  else plan_lora(in, c, plan);
  plan.activations = in.activation_bytes;
  plan.loss = in.loss_bytes;
  plan.workspace = in.workspace_bytes;
  plan.headroom = in.fixed_overhead_bytes + int64_t(in.fragmentation * double(plan.allocated()));
  return plan;
}

}  // namespace ftune::sharding
