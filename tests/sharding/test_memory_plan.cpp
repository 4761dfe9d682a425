// The memory planner against hand-computed figures, including DESIGN.md's 70B example.
#include <gtest/gtest.h>

#include "common/error.h"
#include "sharding/memory_plan.h"

using ftune::sharding::Method;
using ftune::sharding::PlanInput;
using ftune::sharding::plan_memory;
using ftune::sharding::UnitSpec;

namespace {

// Llama-3.1-70B: 80 decoder layers of 855,654,400 parameters, embeddings and head of
// 128,256 x 8192 each, final norm 8192.
PlanInput llama70b(int world) {
  PlanInput in;
  in.world_size = world;
  in.units.push_back({"embed", 1050673152, 1050673152});
  for (int i = 0; i < 80; ++i) in.units.push_back({"layer", 855654400, 855654400});
  in.units.push_back({"norm+head", 1050673152 + 8192, 1050673152 + 8192});
  return in;
}

}  // namespace

TEST(MemoryPlan, FullFineTune70BOn64Gpus) {
  auto plan = plan_memory(llama70b(64));
  int64_t total_params = 1050673152LL * 2 + 8192 + 80LL * 855654400;
  EXPECT_EQ(total_params, 70553706496LL);  // Llama-3.1-70B's published count
  // Every unit divides by 64: 1,102,401,664 elements per rank. The fp32 master is the
  // parameter (the engine gathers from it, casting): 4 + 8 bytes of moments + 4 of gradient
  // = 16 bytes per element, 17.6 GB (DESIGN.md's 15.3 + 4.4 GB counts a bf16 copy the engine
  // does not keep).
  const int64_t slice = total_params / 64;
  EXPECT_EQ(plan.params, 0);
  EXPECT_EQ(plan.master, slice * 4);
  EXPECT_EQ(plan.optimizer, slice * 8);
  EXPECT_EQ(plan.grads, slice * 4);
  EXPECT_NEAR(double(plan.master + plan.optimizer + plan.grads) / 1e9, 17.64, 0.01);
  // Two gathered units in flight: the head (1,050,681,344 parameters) is the largest, in bf16;
  // its gradients in bf16 from autograd plus the fp32 flat buffer of the reduce-scatter.
  EXPECT_EQ(plan.gathered, 2 * 1050681344LL * 2);
  EXPECT_EQ(plan.grad_buffers, 1050681344LL * (2 + 4));
  EXPECT_EQ(plan.host, 0);
}

TEST(MemoryPlan, ShardingDividesByWorldSizeWithPadding) {
  PlanInput in;
  in.units = {{"a", 10, 10}, {"b", 7, 7}};
  in.world_size = 4;
  auto plan = plan_memory(in);
  EXPECT_EQ(plan.master, (3 + 2) * 4);  // ceil(10/4) + ceil(7/4) elements, fp32
  EXPECT_EQ(plan.grads, 5 * 4);
  EXPECT_EQ(plan.optimizer, 5 * 8);
  EXPECT_EQ(plan.gathered, 2 * 10 * 2);      // two of the largest unit, bf16
  EXPECT_EQ(plan.grad_buffers, 10 * (2 + 4));  // bf16 grads + fp32 flat buffer
  EXPECT_EQ(plan.total(), 20 + 20 + 40 + 40 + 60);
  in.world_size = 1;
  EXPECT_EQ(plan_memory(in).gathered, 2 * 10 * 2) << "bf16 compute on one rank still gathers (casts)";
  in.param_bytes = 4;
  plan = plan_memory(in);
  EXPECT_EQ(plan.gathered, 0) << "one fp32 rank computes on the slice itself";
  EXPECT_EQ(plan.grad_buffers, 10 * 4);
}

TEST(MemoryPlan, OffloadMovesMomentsToTheHost) {
  PlanInput in;
  in.units = {{"a", 10, 10}, {"b", 7, 7}};
  in.world_size = 4;
  in.offload_optimizer = true;
  auto plan = plan_memory(in);
  EXPECT_EQ(plan.params, 5 * 4);  // the engine's fp32 slice stays, to gather from
  EXPECT_EQ(plan.master, 0);
  EXPECT_EQ(plan.optimizer, 0);
  EXPECT_EQ(plan.grads, 5 * 4);
  EXPECT_EQ(plan.host, 5 * (4 + 8 + 4)) << "master copy, moments, gradient staging";
  EXPECT_EQ(plan.total(), 20 + 20 + 40 + 60);
}

TEST(MemoryPlan, LoraReplicatesFrozenWeights) {
  PlanInput in;
  in.method = Method::lora;
  in.world_size = 8;
  in.units = {{"layer", 1000, 10}, {"layer", 1000, 10}};
  auto plan = plan_memory(in);
  EXPECT_EQ(plan.params, 2000 * 2);
  EXPECT_EQ(plan.optimizer, 20 * 8);
  EXPECT_EQ(plan.gathered, 0);
  EXPECT_EQ(plan.grad_buffers, 20 * 4);  // the all-reduce bucket
  EXPECT_EQ(plan.total(), 2000 * 2 + 20 * (4 + 4 + 8 + 4));
}

TEST(MemoryPlan, LoraShardedBaseAndFourBitBase) {
  PlanInput in;
  in.method = Method::lora;
  in.world_size = 8;
  in.units = {{"layer", 1000, 10}, {"layer", 1000, 10}};
  in.frozen_sharded = true;
  auto plan = plan_memory(in);
  EXPECT_EQ(plan.params, 2 * 125 * 2);
  EXPECT_EQ(plan.gathered, 2 * 1000 * 2);
  in.frozen_sharded = false;
  in.frozen_bytes = 0.5;
  plan = plan_memory(in);
  EXPECT_EQ(plan.params, 1000);               // 2000 elements at 4 bits
  EXPECT_EQ(plan.gathered, 1000 * 2) << "one unit dequantised to bf16 at a time";
}

TEST(MemoryPlan, HeadroomIsFixedPlusAFractionOfWhatIsAllocated) {
  PlanInput in;
  in.units = {{"a", 1000, 1000}};
  in.param_bytes = 4;
  in.activation_bytes = 500;
  in.loss_bytes = 100;
  in.fixed_overhead_bytes = 1000;
  in.fragmentation = 0.1;
  auto plan = plan_memory(in);
  // 1000 x (4 master + 8 moments + 4 grad) + 1000 x 4 autograd grads + 500 + 100
  EXPECT_EQ(plan.allocated(), 16000 + 4000 + 600);
  EXPECT_EQ(plan.headroom, 1000 + 2060);
  EXPECT_EQ(plan.total(), 20600 + 3060);
}

TEST(MemoryPlan, RejectsBadInput) {
  PlanInput in;
  in.world_size = 0;
  try {
    plan_memory(in);
    FAIL();
  } catch (const ftune::Error& e) {
    EXPECT_NE(std::string(e.what()).find("world size must be at least 1"), std::string::npos);
  }
  in.world_size = 1;
  in.units = {{"bad", -1, 0}};
  EXPECT_THROW(plan_memory(in), ftune::Error);
}

TEST(MemoryPlan, TableListsEveryLine) {
  PlanInput in;
  in.units = {{"a", 1 << 20, 1 << 20}};
  std::string t = plan_memory(in).table();
  for (const char* row : {"parameter slice", "fp32 master", "optimizer state", "gradient slice",
                          "gathered units", "gradient buffers", "activations", "loss chunks", "headroom", "total"})
    EXPECT_NE(t.find(row), std::string::npos) << row;
  // 1 Mi params x (4 master + 4 grad + 8 moments), one gathered bf16 copy (2, the only unit),
  // the unit's bf16 gradients and the fp32 flat buffer (2 + 4): 24 bytes each
  EXPECT_NE(t.find("24.00 MiB"), std::string::npos) << t;
}
