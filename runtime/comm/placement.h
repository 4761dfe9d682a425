// Where every rank of the job runs, checked once at start-up: the GPU each local rank binds,
// the environment of the launcher against what MPI says, and the table rank 0 prints.
//
//   [comm] placement: 4 rank(s) on 2 node(s)
//     rank  host  local  gpu          numa
//        0  a     0/2    0 (cuda 0)   0
//        1  a     1/2    1 (cuda 1)   0
//
// MPI is the truth for rank, size, local rank and local size (World); the launchers'
// variables (OMPI_COMM_WORLD_*, PMIX_RANK, SLURM_*) only cross-check it. SLURM_PROCID is not
// compared under mpirun: there it is the rank of the orted that started the process.
#pragma once

#include <string>
#include <vector>

#include "runtime/comm/communicator.h"

namespace ftune::comm {

// The GPU a rank binds: device index `device` in this process's numbering (after
// CUDA_VISIBLE_DEVICES), `name` the physical id the table shows ("3" or a GPU UUID).
struct GpuBinding {
  int device = -1;   // -1: no GPU (a CPU run)
  std::string name;  // "" on CPU
};

// One GPU per local rank: local rank i takes visible device i. `visible` is the value of
// CUDA_VISIBLE_DEVICES (nullptr when unset), `device_count` what the CUDA runtime counts.
// Throws ftune::Error naming the host, its local ranks and its GPUs when a node has more
// local ranks than GPUs.
GpuBinding bind_gpu(const World& world, int device_count, const char* visible);

// The node name the table shows: SLURMD_NODENAME under Slurm (fake nodes share a hostname),
// else the host name.
std::string node_name(const World& world);

// The NUMA node of the CPU this thread runs on (/sys), or -1 where unknown.
int current_numa_node();

struct PlacementRow {
  int rank = 0, local_rank = 0, local_size = 1, node = 0, numa = -1;
  std::string host, gpu;  // gpu: "" on CPU
};

// Throws ftune::Error when a launcher variable disagrees with MPI's world (naming the variable,
// both values and the rank), e.g. a process started by one launcher inside another's job.
void cross_check_launcher_env(const World& world);

// Collective: every rank's row, in rank order.
std::vector<PlacementRow> gather_placement(const World& world, Communicator& comm, const GpuBinding& gpu);

// The table above, one line per rank.
std::string placement_table(const std::vector<PlacementRow>& rows);

// Throws ftune::Error when two ranks of one node bound the same GPU, naming both.
void check_distinct_gpus(const std::vector<PlacementRow>& rows);

}  // namespace ftune::comm
