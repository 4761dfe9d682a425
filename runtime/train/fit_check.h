// [plan] The memory check `ftune train` makes before loading anything (DESIGN.md, step 3).
#pragma once

#include "runtime/train/run.h"
#include "runtime/train/train_config.h"

namespace ftune::train {

// On a CUDA device: plans this config on this GPU (runtime/train/fit_plan.h) and throws, with
// the plan and its suggestions, when the run cannot fit, unless train.force. The CPU has no
// fixed device memory to check against: nothing happens there.
void check_fits(const TrainConfig& cfg, const Rank& rank);

}  // namespace ftune::train
