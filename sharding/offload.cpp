#include "sharding/offload.h"

#include "common/error.h"

namespace ftune::sharding {
namespace {

// Host memory the GPU can copy to and from asynchronously; plain memory for CPU parameters.
at::Tensor host_like(const at::Tensor& t) {
  auto opts = at::TensorOptions(at::kFloat).device(at::kCPU).pinned_memory(t.is_cuda());
  return at::empty({t.numel()}, opts);
}

}  // namespace

std::vector<OptimParam> OffloadedAdamW::host_copies(const std::vector<OptimParam>& params) {
  std::vector<OptimParam> out;
  for (const auto& p : params) {
    FTUNE_CHECK(p.param.scalar_type() == at::kFloat, "offloaded AdamW keeps fp32 parameters");
    OptimParam h = p;  // the same name, unit and decay ranges (element ranges of the flat slice)
    h.param = host_like(p.param);
    h.param.copy_(p.param.detach().reshape({-1}));
    h.param.requires_grad_(true);
    out.push_back(std::move(h));
  }
  return out;
}

OffloadedAdamW::OffloadedAdamW(std::vector<OptimParam> params)
    : device_(std::move(params)), masters_(host_copies(device_)), host_(masters_) {
  for (const auto& p : device_) staging_.push_back(host_like(p.param));
}

void OffloadedAdamW::step(const AdamWConfig& cfg) {
  at::NoGradGuard no_grad;
  // Gradient slices to the host (blocking copies: the CPU kernel reads them next). A slice
  // without a gradient this step is left alone, as AdamW leaves it.
  for (size_t i = 0; i < device_.size(); ++i) {
    const at::Tensor& g = device_[i].param.grad();
    at::Tensor& host_grad = masters_[i].param.mutable_grad();
    if (!g.defined()) {
      host_grad = at::Tensor();
      continue;
    }
    staging_[i].copy_(g.detach().reshape({-1}));
    host_grad = staging_[i];
  }
  host_.step(cfg);
  // Back into the engine's slices. From pinned memory the copy is asynchronous on the current
  // stream, which the next gathers run on; the host masters are next written after the next
  // step's blocking copies, which wait for this one.
  for (size_t i = 0; i < device_.size(); ++i)
    if (masters_[i].param.grad().defined())
      device_[i].param.detach().view({-1}).copy_(masters_[i].param.detach(), /*non_blocking=*/true);
}

void OffloadedAdamW::zero_grad() {
  // The engine's gradient slices are dropped, as AdamW drops them; the host buffers stay
  // allocated for the next step (their contents are overwritten).
  for (auto& p : device_) p.param.mutable_grad() = at::Tensor();
}

void OffloadedAdamW::reload_masters() {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < device_.size(); ++i)
    masters_[i].param.detach().copy_(device_[i].param.detach().reshape({-1}));
}

void OffloadedAdamW::set_steps(int64_t steps) {
  host_.set_steps(steps);
  reload_masters();
}

}  // namespace ftune::sharding
