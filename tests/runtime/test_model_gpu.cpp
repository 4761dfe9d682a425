// The model on CUDA against the same model on the CPU; skips visibly without a GPU.
#include <gtest/gtest.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "runtime/generate.h"
#include "runtime/model/llama.h"
#include "tests/runtime/model_test_util.h"

namespace ftune::model {
namespace {

class ModelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device: GPU model tests skipped";
  }
};

TEST_F(ModelGpu, CudaLogitsMatchCpuInFloat32) {
  at::NoGradGuard no_grad;
  for (const auto& name : {"tiny-llama3", "tiny-qwen2", "tiny-mistral"}) {
    CausalLM cpu(preset(name));
    cpu.init_weights(11);
    CausalLM gpu(preset(name), at::TensorOptions(at::kFloat).device(at::kCUDA));
    auto a = cpu.base_parameters(), b = gpu.base_parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].second.copy_(a[i].second);
    at::Tensor ids = at::randint(cpu.config().vocab_size, {2, 40}, at::kLong);
    double diff = testing::max_abs_diff(cpu.forward(ids), gpu.forward(ids.cuda()).cpu());
    EXPECT_LT(diff, 1e-3) << name;  // TF32 may be on for matmuls
  }
}

TEST_F(ModelGpu, Bfloat16GenerationRuns) {
  CausalLM m(preset("tiny-llama"), at::TensorOptions(at::kBFloat16).device(at::kCUDA));
  m.init_weights(3);
  EXPECT_EQ(generate(m, {1, 5, 9}, 16, {}, {}).size(), 16u);
}

}  // namespace
}  // namespace ftune::model
