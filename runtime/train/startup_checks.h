// [world] Checks every rank runs before any heavy work (loading weights, opening shards), so
// that a job that cannot work ends in seconds with one line naming the rank, the host and what
// to change, instead of failing later on one node, or worse, silently training two configs.
#pragma once

#include "runtime/comm/communicator.h"
#include "runtime/comm/placement.h"
#include "runtime/train/train_config.h"

namespace ftune::train {

// "ftune 0.1.0 (libftune_torch built <date> <time>)": differs between two builds.
std::string binary_version();

// Collective. In order: the launcher's variables agree with MPI; the model directory and the
// shards are readable on this node; every rank has the same config (the hash of its resolved
// TOML) and the same binary; no two ranks of a node bound the same GPU. Rank 0 prints the
// placement table. Throws ftune::Error (on every rank that sees the problem).
void run_startup_checks(const TrainConfig& cfg, const comm::World& world, comm::Communicator& comm,
                        const comm::GpuBinding& gpu);

}  // namespace ftune::train
