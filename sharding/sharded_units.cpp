#include "sharding/sharded_units.h"

#include <chrono>

#include <torch/autograd.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "common/error.h"
#include "runtime/comm/tensor_ops.h"

namespace ftune::sharding {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ShardedUnits::Unit {
  std::string name;
  std::vector<std::pair<std::string, at::Tensor>> flat;        // module tensors in the buffer
  std::vector<std::pair<std::string, at::Tensor>> replicated;  // whole on every rank
  FlatLayout layout;
  at::Tensor shard;     // [shard_numel] fp32 master (full) or compute dtype (frozen_sharded)
  at::Tensor gathered;  // [padded_numel] compute dtype; storage empty while not held
  int holds = 0;        // outstanding gathers: a tied head holds the embeddings too
  int backward_holds = 0;  // gathers made for backward without checkpointing
  size_t grads_pending = 0;  // flat parameters still to accumulate a gradient this backward
  bool trains_flat = false;  // full mode: the flat parameters train
  bool resident = false;     // module tensors view `shard` itself (one rank, same dtype)
  // A gather issued ahead (prefetch): the storage is refilled and the all-gather in flight;
  // the next gather() waits on it instead of starting its own.
  std::unique_ptr<comm::Work> pending;
  at::Tensor pending_send;  // kept alive until the all-gather completes
};

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Frees a tensor's storage without touching its TensorImpl or version counter, so views and
// autograd's saved tensors keep pointing at the same StorageImpl and see a later refill.
void free_storage(const at::Tensor& t) {
  c10::StorageImpl* impl = t.storage().unsafeGetStorageImpl();
  impl->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  impl->set_nbytes(0);
}

void refill_storage(const at::Tensor& t) {
  c10::StorageImpl* impl = t.storage().unsafeGetStorageImpl();
  const size_t nbytes = size_t(t.numel()) * t.element_size();
  impl->set_data_ptr_noswap(impl->allocator()->allocate(nbytes));
  impl->set_nbytes(nbytes);
}

// Makes the module tensor `param` (same TensorImpl, so every holder of it sees the change) a
// view of `view`. set_data() refuses a meta tensor (a model built without memory); the shallow
// copy it would do is what is wanted here, since no autograd graph refers to the meta tensor.
void point_at(at::Tensor& param, const at::Tensor& view) {
  if (param.is_meta()) {
    FTUNE_CHECK(param.sizes() == view.sizes(), "meta parameter and its view differ in shape");
    param.unsafeGetTensorImpl()->shallow_copy_from(view.getIntrusivePtr());
  } else {
    param.set_data(view);
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> shapes_of(
    const std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [name, t] : params) out.emplace_back(name, t.sizes().vec());
  return out;
}

}  // namespace

ShardedUnits::ShardedUnits(std::vector<UnitParams> units, comm::Communicator& shard,
                           comm::Communicator* replicas, EngineOptions options)
    : shard_(shard), replicas_(replicas), options_(options) {
  const bool sliced = options_.mode != ShardMode::frozen_replicated;
  for (auto& in : units) {
    auto u = std::make_unique<Unit>();
    u->name = in.name;
    for (auto& [name, t] : in.params) {
      const bool in_flat = options_.mode == ShardMode::full ||
                           (options_.mode == ShardMode::frozen_sharded && !t.requires_grad());
      if (options_.mode == ShardMode::full) t.requires_grad_(true);
      (in_flat ? u->flat : u->replicated).emplace_back(name, t);
    }
    u->trains_flat = options_.mode == ShardMode::full && !u->flat.empty();
    u->layout = FlatLayout(shapes_of(u->flat), sliced ? shard_.size() : 1);
    if (sliced && !u->flat.empty()) {
      const auto opts = at::TensorOptions(options_.compute_dtype).device(options_.device);
      u->gathered = at::empty({u->layout.padded_numel()}, opts);
      u->shard = at::zeros({u->layout.shard_numel()},
                           u->trains_flat ? opts.dtype(at::kFloat) : opts);
      if (u->trains_flat) u->shard.requires_grad_(true);
      u->resident = options_.resident_when_alone && shard_.size() == 1 &&
                    u->shard.scalar_type() == options_.compute_dtype;
      if (u->resident) u->gathered = u->shard.detach();  // the same storage
    }
    units_.push_back(std::move(u));
  }
}

ShardedUnits::~ShardedUnits() = default;

const std::string& ShardedUnits::unit_name(size_t u) const { return units_.at(u)->name; }
const FlatLayout& ShardedUnits::layout(size_t u) const { return units_.at(u)->layout; }
at::Tensor& ShardedUnits::shard(size_t u) { return units_.at(u)->shard; }

void ShardedUnits::install(bool take_weights) {
  at::NoGradGuard no_grad;
  const int rank = shard_.rank();
  for (auto& u : units_) {
    if (!u->gathered.defined()) continue;
    for (const FlatPiece& piece : take_weights ? u->layout.pieces(rank) : std::vector<FlatPiece>{}) {
      const at::Tensor& src = u->flat[piece.entry].second;
      u->shard.narrow(0, piece.shard_offset, piece.count)
          .copy_(src.detach().reshape({-1}).narrow(0, piece.entry_offset, piece.count));
    }
    // From now on the module tensors are views of the gathered buffer, empty until gathered.
    for (size_t i = 0; i < u->flat.size(); ++i) {
      const FlatEntry& e = u->layout.entries()[i];
      point_at(u->flat[i].second, u->gathered.narrow(0, e.offset, e.numel).view(e.shape));
    }
    if (!u->resident) free_storage(u->gathered);
  }
}

void ShardedUnits::start_gather(Unit& u) {
  refill_storage(u.gathered);
  u.pending_send = u.shard.detach().to(options_.compute_dtype).contiguous();
  u.pending = comm::all_gather_async(shard_, u.pending_send, u.gathered);
  counters_.all_gather_bytes += u.gathered.numel() * u.gathered.element_size();
  ++counters_.gathers;
}

void ShardedUnits::gather(size_t index) {
  Unit& u = *units_.at(index);
  if (!u.gathered.defined() || u.resident || u.holds++ > 0) return;
  auto t0 = std::chrono::steady_clock::now();
  if (!u.pending) start_gather(u);
  u.pending->wait();
  u.pending.reset();
  u.pending_send = at::Tensor();
  counters_.all_gather_s += seconds_since(t0);
}

void ShardedUnits::prefetch(size_t index) {
  if (index >= units_.size()) return;
  Unit& u = *units_[index];
  if (!u.gathered.defined() || u.resident || u.holds > 0 || u.pending) return;
  start_gather(u);
  ++counters_.prefetches;
}

void ShardedUnits::drop_prefetches() {
  // A prefetch not consumed (a forward that ended early) would hold slices the optimizer is
  // about to change: complete it and free the storage.
  for (auto& u : units_) {
    if (!u->pending) continue;
    u->pending->wait();
    u->pending.reset();
    u->pending_send = at::Tensor();
    if (u->holds == 0) free_storage(u->gathered);
  }
}

void ShardedUnits::release(size_t index) {
  Unit& u = *units_.at(index);
  if (!u.gathered.defined() || u.resident) return;
  FTUNE_CHECK(u.holds > 0, "release of unit " + u.name + " that is not gathered");
  if (--u.holds == 0) free_storage(u.gathered);
}

// Flat gradients (one per flat parameter, in order) -> this rank's slice, accumulated into the
// master's .grad.
void ShardedUnits::reduce_grads(size_t index, const std::vector<at::Tensor>& grads) {
  Unit& u = *units_.at(index);
  at::NoGradGuard no_grad;
  if (u.resident) {  // one rank: the sum is the gradient itself, added in place
    at::Tensor& master = u.shard;
    if (!master.grad().defined()) master.mutable_grad() = at::zeros_like(master.detach());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      const FlatEntry& e = u.layout.entries()[i];
      master.mutable_grad().narrow(0, e.offset, e.numel).add_(grads[i].reshape({-1}));
    }
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  const auto opts = u.gathered.options().dtype(options_.reduce_dtype);
  at::Tensor flat = at::zeros({u.layout.padded_numel()}, opts);
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    const FlatEntry& e = u.layout.entries()[i];
    flat.narrow(0, e.offset, e.numel).copy_(grads[i].reshape({-1}));
  }
  at::Tensor mine = at::empty({u.layout.shard_numel()}, opts);
  comm::reduce_scatter(shard_, flat, mine, comm::ReduceOp::sum);
  counters_.reduce_scatter_s += seconds_since(t0);
  counters_.reduce_scatter_bytes += flat.numel() * flat.element_size();
  at::Tensor g = mine.to(at::kFloat);
  at::Tensor& master = u.shard;
  if (master.grad().defined()) {
    master.mutable_grad().add_(g);
  } else {
    master.mutable_grad() = g;
  }
}

// ---- activation checkpointing: one autograd Function per unit call ---------------------------

struct CallState : torch::CustomClassHolder {
  ShardedUnits* engine = nullptr;
  std::vector<size_t> uses;
  std::function<at::Tensor(const at::Tensor&)> fn;
};

struct UnitFunction : torch::autograd::Function<UnitFunction> {
  // `inputs` are what gradients flow to besides `input`: the master slices of the used units
  // that train, then their replicated trainable parameters (see grad_inputs()).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, at::TensorList inputs,
                            c10::intrusive_ptr<CallState> state) {
    (void)inputs;
    ctx->save_for_backward({input});
    for (size_t u : state->uses) state->engine->gather(u);
    state->engine->prefetch(state->uses.front() + 1);  // the next unit in forward order
    at::Tensor out = state->fn(input);
    for (size_t u : state->uses) state->engine->release(u);
    ctx->saved_data["state"] = c10::IValue::make_capsule(std::move(state));
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto state = c10::static_intrusive_pointer_cast<CallState>(ctx->saved_data["state"].toCapsule());
    ShardedUnits& engine = *state->engine;
    at::Tensor in = ctx->get_saved_variables()[0].detach();
    const bool float_in = in.is_floating_point();
    if (float_in) in.requires_grad_(true);
    for (size_t u : state->uses) engine.gather(u);
    if (state->uses.front() > 0) engine.prefetch(state->uses.front() - 1);  // backward order
    // What to differentiate: the input, each used unit's flat parameters (full mode), then its
    // replicated trainable parameters.
    std::vector<at::Tensor> wrt;
    if (float_in) wrt.push_back(in);
    for (size_t u : state->uses) {
      auto& unit = *engine.units_[u];
      if (unit.trains_flat)
        for (auto& p : unit.flat) wrt.push_back(p.second);
      for (auto& p : unit.replicated)
        if (p.second.requires_grad()) wrt.push_back(p.second);
    }
    variable_list grads;
    {
      at::AutoGradMode with_grad(true);
      at::Tensor out = state->fn(in);
      grads = torch::autograd::grad({out}, wrt, {grad_out[0]}, std::nullopt, false,
                                    /*allow_unused=*/true);
    }
    variable_list result{float_in ? grads[0] : at::Tensor()};
    size_t next = float_in ? 1 : 0;
    std::vector<at::Tensor> replicated_grads;
    for (size_t u : state->uses) {
      auto& unit = *engine.units_[u];
      if (unit.trains_flat) {
        std::vector<at::Tensor> flat(grads.begin() + next, grads.begin() + next + unit.flat.size());
        next += unit.flat.size();
        engine.reduce_grads(u, flat);  // into the master's .grad: returned as undefined below
        result.push_back(at::Tensor());
      }
      for (auto& p : unit.replicated)
        if (p.second.requires_grad()) replicated_grads.push_back(grads[next++]);
    }
    for (auto& g : replicated_grads) result.push_back(g);
    for (size_t u : state->uses) engine.release(u);
    result.push_back(at::Tensor());  // the capsule
    return result;
  }
};

at::Tensor ShardedUnits::run_checkpointed(const std::vector<size_t>& uses,
                                          std::function<at::Tensor(const at::Tensor&)> fn,
                                          const at::Tensor& input) {
  // The masters are Function inputs so that autograd reaches this node and orders it; their
  // gradients are written by reduce_grads() (an undefined gradient is returned for them).
  std::vector<at::Tensor> inputs;
  for (size_t u : uses) {
    Unit& unit = *units_.at(u);
    if (unit.trains_flat) inputs.push_back(unit.shard);
    for (auto& p : unit.replicated)
      if (p.second.requires_grad()) inputs.push_back(p.second);
  }
  auto state = c10::make_intrusive<CallState>();
  state->engine = this;
  state->uses = uses;
  state->fn = std::move(fn);
  return UnitFunction::apply(input, at::TensorList(inputs), state);
}

// ---- without checkpointing: free after forward, refill before backward -----------------------

namespace {
struct ReduceWhenAccumulated : torch::autograd::PostAccumulateGradHook {
  std::function<void()> on_grad;
  explicit ReduceWhenAccumulated(std::function<void()> f) : on_grad(std::move(f)) {}
  void operator()(const torch::autograd::Variable&) override { on_grad(); }
};
}  // namespace

at::Tensor ShardedUnits::run_kept(const std::vector<size_t>& uses,
                                  std::function<at::Tensor(const at::Tensor&)> fn,
                                  const at::Tensor& input) {
  for (size_t u : uses) gather(u);
  prefetch(uses.front() + 1);
  at::Tensor out = fn(input);
  for (size_t u : uses) release(u);
  if (!out.requires_grad()) return out;
  for (size_t u : uses) {
    Unit& unit = *units_[u];
    if (!unit.trains_flat || unit.grads_pending > 0) continue;
    // Armed once per backward: every flat parameter accumulates once (autograd sums a tied
    // weight's uses before accumulating), then the unit's slice is reduced and it is freed.
    unit.grads_pending = unit.flat.size();
    for (auto& [name, p] : unit.flat) {
      torch::autograd::impl::set_post_acc_grad_hooks(
          p, std::make_unique<ReduceWhenAccumulated>([this, u] {
            Unit& un = *units_[u];
            if (--un.grads_pending > 0) return;
            std::vector<at::Tensor> grads;
            for (auto& fp : un.flat) {
              grads.push_back(fp.second.grad());
              fp.second.mutable_grad() = at::Tensor();
            }
            reduce_grads(u, grads);
            for (; un.backward_holds > 0; --un.backward_holds) release(u);
          }));
    }
  }
  // Frozen sharded units get no gradients to tell when they are done: their backward gathers
  // are released when the whole backward ends.
  out.register_hook([this, uses](const at::Tensor&) {
    for (size_t u : uses) {
      Unit& unit = *units_[u];
      if (!unit.gathered.defined()) continue;
      gather(u);
      ++unit.backward_holds;
      if (u == uses.front() && u > 0) prefetch(u - 1);
      if (!unit.trains_flat && unit.backward_holds == 1) {
        torch::autograd::Engine::get_default_engine().queue_callback([this, u] {
          for (Unit& un = *units_[u]; un.backward_holds > 0; --un.backward_holds) release(u);
        });
      }
    }
  });
  return out;
}

at::Tensor ShardedUnits::run(const std::vector<size_t>& uses,
                             std::function<at::Tensor(const at::Tensor&)> fn,
                             const at::Tensor& input) {
  if (checkpointed(uses) && at::GradMode::is_enabled()) return run_checkpointed(uses, std::move(fn), input);
  if (!at::GradMode::is_enabled()) {  // evaluation: gather, run, free
    for (size_t u : uses) gather(u);
    prefetch(uses.front() + 1);
    at::Tensor out = fn(input);
    for (size_t u : uses) release(u);
    return out;
  }
  return run_kept(uses, std::move(fn), input);
}

bool ShardedUnits::checkpointed(const std::vector<size_t>& uses) const {
  if (!options_.activation_checkpointing) return false;
  const auto& which = options_.checkpoint_units;
  if (which.empty()) return true;
  for (size_t u : uses)
    FTUNE_CHECK(u < which.size() && which[u] == which[uses.front()],
                "units of one call must all recompute or all keep activations (unit " + std::to_string(u) + ")");
  return which[uses.front()];
}

// ---- after backward ----------------------------------------------------------------------------

std::vector<OptimParam> ShardedUnits::optim_params(
    const std::function<bool(const std::string&, int64_t)>& decays) const {
  std::vector<OptimParam> out;
  for (const auto& u : units_) {
    if (u->trains_flat) {
      OptimParam p{u->shard, {}, u->name, int(&u - &units_[0])};
      for (const FlatPiece& piece : u->layout.pieces(shard_.rank())) {
        const FlatEntry& e = u->layout.entries()[piece.entry];
        if (decays(e.name, int64_t(e.shape.size())))
          p.decay.emplace_back(piece.shard_offset, piece.count);
      }
      out.push_back(std::move(p));
    }
    for (const auto& [name, t] : u->replicated) {
      if (!t.requires_grad()) continue;
      OptimParam p{t, {}, name, -1};
      if (decays(name, t.dim())) p.decay.emplace_back(0, t.numel());
      out.push_back(std::move(p));
    }
  }
  return out;
}

void ShardedUnits::finish_backward() {
  at::NoGradGuard no_grad;
  drop_prefetches();
  auto t0 = std::chrono::steady_clock::now();
  int64_t bytes = 0;
  // Replicated gradients: one bucket, summed over every rank (shard and replica groups both).
  std::vector<at::Tensor> grads;
  for (auto& u : units_)
    for (auto& p : u->replicated)
      if (p.second.requires_grad() && p.second.grad().defined()) grads.push_back(p.second.grad());
  if (!grads.empty()) {
    std::vector<at::Tensor> flat;
    for (auto& g : grads) flat.push_back(g.reshape({-1}).to(options_.reduce_dtype));
    at::Tensor bucket = at::cat(flat);
    comm::all_reduce(shard_, bucket, comm::ReduceOp::sum);
    if (replicas_ != nullptr) comm::all_reduce(*replicas_, bucket, comm::ReduceOp::sum);
    int64_t at_elem = 0;
    for (auto& g : grads) {
      g.copy_(bucket.narrow(0, at_elem, g.numel()).view(g.sizes()));
      at_elem += g.numel();
    }
    bytes += bucket.numel() * bucket.element_size();
  }
  // Hybrid sharding: ranks holding the same slice sum their slices' gradients.
  if (replicas_ != nullptr && replicas_->size() > 1) {
    for (auto& u : units_) {
      if (!u->trains_flat || !u->shard.grad().defined()) continue;
      at::Tensor g = u->shard.mutable_grad();
      comm::all_reduce(*replicas_, g, comm::ReduceOp::sum);
      bytes += g.numel() * g.element_size();
    }
  }
  counters_.all_reduce_s += seconds_since(t0);
  counters_.all_reduce_bytes += bytes;
}

double ShardedUnits::grad_norm() {
  at::NoGradGuard no_grad;
  // Slices are disjoint within the shard group and identical across replicas; replicated
  // gradients are identical everywhere, so where slices are summed only rank 0 adds them.
  const bool sliced = options_.mode != ShardMode::frozen_replicated;
  at::Tensor sq = at::zeros({1}, at::TensorOptions(at::kDouble));
  for (auto& u : units_) {
    if (u->trains_flat && u->shard.grad().defined())
      sq += u->shard.grad().to(at::kDouble).pow(2).sum().cpu();
    if (sliced && shard_.rank() != 0) continue;
    for (auto& p : u->replicated)
      if (p.second.requires_grad() && p.second.grad().defined())
        sq += p.second.grad().to(at::kDouble).pow(2).sum().cpu();
  }
  sq = sq.to(at::kFloat).contiguous();
  if (sliced) comm::all_reduce(shard_, sq, comm::ReduceOp::sum);
  return std::sqrt(sq.item<double>());
}

std::vector<std::pair<std::string, at::Tensor>> ShardedUnits::gather_unit(size_t index) {
  at::NoGradGuard no_grad;
  Unit& u = *units_.at(index);
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (u.gathered.defined()) {
    // Gather fp32 masters (not the compute-dtype copy) so an export loses nothing.
    at::Tensor full = at::empty({u.layout.padded_numel()}, u.shard.options().requires_grad(false));
    comm::all_gather_async(shard_, u.shard.detach().contiguous(), full)->wait();
    for (const FlatEntry& e : u.layout.entries())
      out.emplace_back(e.name, full.narrow(0, e.offset, e.numel).view(e.shape).to(at::kFloat));
  } else {
    for (auto& [name, t] : u.flat) out.emplace_back(name, t.detach().to(at::kFloat));
  }
  for (auto& [name, t] : u.replicated) out.emplace_back(name, t.detach().to(at::kFloat));
  return out;
}

}  // namespace ftune::sharding
