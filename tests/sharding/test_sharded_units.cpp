// The engine's mechanics in one process (backend `local`): parameters hold memory only while
// their unit runs, checkpointing recomputes each unit once in backward, prefetch runs one unit
// ahead, gradients land in the masters as the plain model's, and bf16 compute stays close to
// fp32. Multi-rank equivalence is in test_sharding_mpi.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include "runtime/comm/local_communicator.h"
#include "runtime/model/llama.h"
#include "runtime/shard_model.h"

namespace ftune::sharding {
namespace {

using model::CausalLM;

std::shared_ptr<CausalLM> tiny(const char* preset) {
  auto m = std::make_shared<CausalLM>(model::preset(preset));
  m->init_weights(3);
  return m;
}

struct Step {
  at::Tensor ids, labels;
};

Step batch(const model::ModelConfig& c) {
  at::manual_seed(5);
  return {at::randint(c.vocab_size, {2, 9}, at::kLong), at::randint(c.vocab_size, {2, 9}, at::kLong)};
}

at::Tensor loss_of(CausalLM& m, const Step& s) {
  model::ForwardInputs in;
  in.ids = s.ids;
  return m.loss(in, s.labels);
}

class ShardedUnitsTest : public ::testing::TestWithParam<bool> {  // activation checkpointing
 protected:
  void SetUp() override { at::set_num_threads(1); }
  comm::LocalCommunicator comm_;
};

TEST_P(ShardedUnitsTest, ParametersHoldMemoryOnlyWhileTheirUnitRuns) {
  auto m = tiny("tiny-llama");
  EngineOptions o;
  o.activation_checkpointing = GetParam();
  o.resident_when_alone = false;  // the gather/free path of a sharded run, in one process
  auto engine = model::shard_model(*m, comm_, nullptr, o, true);
  const at::Tensor q = m->layer(1)->self_attn->q_proj->weight;
  EXPECT_EQ(q.storage().nbytes(), 0u);  // freed after install
  // Wrap the engine's runner to look inside a run.
  std::vector<std::pair<size_t, size_t>> during;  // (unit, bytes of layer 1's q_proj storage)
  m->set_unit_runner([&](const model::UnitCall& call, const at::Tensor& input) {
    return engine->run(call.uses, [&, fn = call.run, u = call.unit](const at::Tensor& x) {
      during.emplace_back(u, q.storage().nbytes());
      return fn(x);
    }, input);
  });
  Step s = batch(m->config());
  loss_of(*m, s).backward();
  engine->finish_backward();
  EXPECT_EQ(q.storage().nbytes(), 0u);  // freed again after backward
  size_t runs_of_layer1 = 0;
  for (auto [unit, bytes] : during) {
    if (unit == 2) {
      ++runs_of_layer1;
      EXPECT_GT(bytes, 0u);  // gathered while running
    }
  }
  // Checkpointing runs each unit again in backward; keeping activations runs it once.
  EXPECT_EQ(runs_of_layer1, GetParam() ? 2u : 1u);
  EXPECT_GT(engine->counters().prefetches, 0);
  EXPECT_GT(engine->counters().all_gather_bytes, 0);
}

// Alone, the module tensors view the slices: no gathers, the weights always present.
TEST_P(ShardedUnitsTest, AloneTheModuleViewsTheSlicesWithoutGathers) {
  auto m = tiny("tiny-llama");
  EngineOptions o;
  o.activation_checkpointing = GetParam();
  auto engine = model::shard_model(*m, comm_, nullptr, o, true);
  const at::Tensor q = m->layer(1)->self_attn->q_proj->weight;
  EXPECT_EQ(q.data_ptr(), engine->shard(2).data_ptr<float>() + engine->layout(2).entries()[1].offset);
  Step s = batch(m->config());
  loss_of(*m, s).backward();
  engine->finish_backward();
  EXPECT_EQ(engine->counters().gathers, 0);
  EXPECT_GT(q.storage().nbytes(), 0u);
  EXPECT_TRUE(engine->shard(2).grad().defined());
}

TEST_P(ShardedUnitsTest, MasterGradientsEqualThePlainModels) {
  for (const char* preset : {"tiny-llama", "tiny-llama3"}) {
   for (bool resident : {true, false}) {
    auto plain = tiny(preset);
    Step s = batch(plain->config());
    loss_of(*plain, s).backward();
    auto sharded = tiny(preset);
    EngineOptions o;
    o.activation_checkpointing = GetParam();
    o.resident_when_alone = resident;
    auto engine = model::shard_model(*sharded, comm_, nullptr, o, true);
    loss_of(*sharded, s).backward();
    engine->finish_backward();
    auto units = plain->parameter_units();
    for (size_t u = 0; u < units.size(); ++u) {
      const auto& layout = engine->layout(u);
      ASSERT_TRUE(engine->shard(u).grad().defined()) << preset << " unit " << u;
      for (size_t i = 0; i < layout.entries().size(); ++i) {
        const auto& e = layout.entries()[i];
        EXPECT_EQ(e.name, units[u].params[i].first);
        at::Tensor g = engine->shard(u).grad().narrow(0, e.offset, e.numel).view(e.shape);
        EXPECT_TRUE(at::allclose(g, units[u].params[i].second.grad(), 1e-5, 1e-7))
            << preset << " " << e.name << (resident ? " resident" : " gathered");
      }
    }
   }
  }
}

TEST_P(ShardedUnitsTest, Bf16ComputeStaysNearFp32) {
  auto m32 = tiny("tiny-llama");
  Step s = batch(m32->config());
  const double ref = loss_of(*m32, s).item<double>();
  auto m16 = tiny("tiny-llama");
  EngineOptions o;
  o.activation_checkpointing = GetParam();
  o.compute_dtype = at::kBFloat16;
  o.reduce_dtype = at::kBFloat16;
  auto engine = model::shard_model(*m16, comm_, nullptr, o, true);
  EXPECT_EQ(m16->layer(0)->mlp->up_proj->weight.scalar_type(), at::kBFloat16);
  at::Tensor loss = loss_of(*m16, s);
  EXPECT_NEAR(loss.item<double>(), ref, 0.02 * std::abs(ref));
  loss.backward();
  engine->finish_backward();
  EXPECT_EQ(engine->shard(1).grad().scalar_type(), at::kFloat);  // masters stay fp32
  EXPECT_GT(engine->grad_norm(), 0.0);
}

TEST_P(ShardedUnitsTest, GatherUnitReturnsTheWeightsItWasGiven) {
  auto m = tiny("tiny-qwen2");
  auto units = m->parameter_units();
  std::vector<at::Tensor> before;
  for (auto& p : units[1].params) before.push_back(p.second.detach().clone());
  EngineOptions o;
  o.activation_checkpointing = GetParam();
  auto engine = model::shard_model(*m, comm_, nullptr, o, true);
  auto full = engine->gather_unit(1);
  ASSERT_EQ(full.size(), before.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_TRUE(at::equal(full[i].second, before[i]));
}

INSTANTIATE_TEST_SUITE_P(Checkpointing, ShardedUnitsTest, ::testing::Bool());

}  // namespace
}  // namespace ftune::sharding
