// `ftune train`: one rank of a fine-tuning run, as named steps (world, model, data, loop,
// evaluate, export). Started once per GPU (or CPU rank) by mpirun/srun, or alone.
#pragma once

#include "runtime/train/train_config.h"

namespace ftune::train {

// Runs the whole job on this rank; returns the process exit code. Errors on any rank end
// every rank (comm::run_or_abort) with that rank's message.
int run_train(const TrainConfig& cfg);

}  // namespace ftune::train
