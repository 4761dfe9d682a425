// optim.offload end to end under mpirun: AdamW with its masters and moments in host memory
// (sharding/offload.h) trains exactly as the on-device AdamW, and resumes exactly (the
// masters are re-read from the restored slices).
#include "tests/runtime/train_test_util.h"

namespace ftune::test {
namespace {

constexpr const char* kRun = "--data.global_batch 8 --train.micro_batch 2 --optim.lr 1e-2 "
                             "--optim.weight_decay 0.1 --schedule.decay constant --log.every 1 ";

TEST_F(TrainE2E, OffloadedAdamWGivesTheSameLosses) {
  const auto on_device = losses(train("full", std::string(kRun) + "--train.steps 6", 2, "device"));
  const auto offloaded = losses(train("full", std::string(kRun) + "--train.steps 6 --optim.offload=true", 2, "host"));
  ASSERT_EQ(on_device.size(), 6u);
  ASSERT_EQ(offloaded.size(), 6u);
  for (const auto& [step, loss] : on_device) {
    EXPECT_NEAR(offloaded.at(step), loss, 1e-6) << "step " << step;
    std::printf("[offload] step %lld: on device %.7f, offloaded %.7f\n", (long long)step, loss, offloaded.at(step));
  }
  EXPECT_LT(on_device.rbegin()->second, on_device.begin()->second) << "it learns";

  // Stopped after 3 steps and resumed: the same losses as the run straight through.
  const std::string args = std::string(kRun) + "--train.steps 6 --optim.offload=true --train.stop_after 3 ";
  train("full", args, 2, "resumed");
  const auto resumed = losses(train("full", args, 2, "resumed"));
  for (const auto& [step, loss] : offloaded) EXPECT_NEAR(resumed.at(step), loss, 1e-6) << "resumed, step " << step;
}

}  // namespace
}  // namespace ftune::test
