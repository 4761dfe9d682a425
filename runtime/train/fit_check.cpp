#include "runtime/train/fit_check.h"

#include <cstdio>

#include <ATen/cuda/CUDAContext.h>

#include "common/error.h"
#include "common/text.h"
#include "runtime/train/fit_plan.h"

namespace ftune::train {

void check_fits(const TrainConfig& cfg, const Rank& rank) {
  if (!rank.device.is_cuda()) return;
  const int64_t gpu_bytes = int64_t(at::cuda::getDeviceProperties(rank.device.index())->totalGlobalMem);
  const PlanOptions options = plan_options(cfg, rank.world.size, rank.world.local_size, gpu_bytes);
  const PlanResult plan = plan_run(model::load_model_dir_config(cfg.model.path), options);
  if (rank.root())
    std::fprintf(stderr, "[plan] %s of %s per GPU planned (allocated %s; ftune plan shows the lines)\n",
                 format_bytes(double(plan.memory.total())).c_str(), format_bytes(double(gpu_bytes)).c_str(),
                 format_bytes(double(plan.memory.allocated())).c_str());
  if (plan.fits) return;
  if (cfg.train.force) {
    if (rank.root()) std::fprintf(stderr, "[plan] does not fit; starting anyway (train.force)\n%s",
                                  plan_text(plan).c_str());
    return;
  }
  // Every rank plans the same numbers, so every rank refuses alike.
  throw Error("the run does not fit in GPU memory, by the plan made before loading anything:\n" +
              plan_text(plan) + "change one of the above, or set train.force = true to start anyway");
}

}  // namespace ftune::train
