// AdamW with its state in host memory (optim.offload): the fp32 masters and both moments of
// every slice live on the host, pinned when the parameters are on a GPU; a step copies each
// gradient slice to the host, updates there with the same fused kernel as AdamW (its CPU
// build) and copies the updated master back into the engine's slice, which the next gathers
// read.
//
// What this saves on the GPU: the moments, 8 of the 16 bytes per trainable element. The
// engine's fp32 slice stays on the device (it is what units are gathered from and what
// checkpoints save); a compute-dtype device slice (saving 2 bytes more) needs the engine to
// keep the master apart from the slice it gathers, not done yet. The update is not yet
// overlapped with the next forward: step() returns once the update is done and the copies
// back are queued.
#pragma once

#include <vector>

#include "sharding/optimizer.h"

namespace ftune::sharding {

class OffloadedAdamW {
 public:
  // `params`: the engine's fp32 slices (any device); their current values become the masters.
  explicit OffloadedAdamW(std::vector<OptimParam> params);
  void step(const AdamWConfig& cfg);
  void zero_grad();
  int64_t steps() const { return host_.steps(); }
  // For checkpoints: the host moments of parameter i (restored by copying into them).
  std::vector<std::pair<std::string, at::Tensor>> state(size_t i) const { return host_.state(i); }
  // After a restore: the step count, and the masters re-read from the restored slices.
  void set_steps(int64_t steps);

 private:
  static std::vector<OptimParam> host_copies(const std::vector<OptimParam>& params);
  void reload_masters();

  std::vector<OptimParam> device_;  // the engine's slices
  std::vector<OptimParam> masters_; // host fp32 copies; .grad views staging_ during a step
  std::vector<at::Tensor> staging_; // host gradient slices (pinned on CUDA)
  AdamW host_;                      // over masters_
};

}  // namespace ftune::sharding
