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
  // bf16 params + fp32 master + two fp32 moments: 14 bytes per param over 64 ranks ~ 15.4 GB
  // (DESIGN.md: "about 15.3 GB per GPU").
  double resident = double(plan.params + plan.master + plan.optimizer);
  EXPECT_NEAR(resident / 1e9, 14.0 * total_params / 64 / 1e9, 0.01);
  EXPECT_NEAR(resident / 1e9, 15.4, 0.1);
  EXPECT_NEAR(plan.grads / 1e9, 4.4, 0.05);  // fp32 gradient shard
  // Two gathered units in flight: the embedding-sized unit is the largest, 2.1 GB in bf16.
  EXPECT_EQ(plan.gathered, 2 * 1050681344LL * 2);
}

TEST(MemoryPlan, ShardingDividesByWorldSizeWithPadding) {
  PlanInput in;
  in.units = {{"a", 10, 10}, {"b", 7, 7}};
  in.world_size = 4;
  auto plan = plan_memory(in);
  EXPECT_EQ(plan.params, (3 + 2) * 2);  // ceil(10/4) + ceil(7/4) elements, bf16
  EXPECT_EQ(plan.master, 5 * 4);        // ceil(17/4) trainable elements, fp32
  EXPECT_EQ(plan.gathered, 2 * 10 * 2);
  in.world_size = 1;
  EXPECT_EQ(plan_memory(in).gathered, 0) << "one rank holds whole units and gathers nothing";
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
  EXPECT_EQ(plan.total(), 2000 * 2 + 20 * (4 + 4 + 8));
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
  for (const char* row : {"parameters", "fp32 master", "optimizer state", "gradients", "total"})
    EXPECT_NE(t.find(row), std::string::npos) << row;
  // 1 Mi params x (2 bf16 + 4 master + 4 grad + 8 moments) bytes
  EXPECT_NE(t.find("18.00 MiB"), std::string::npos) << t;
}
