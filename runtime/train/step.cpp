#include "runtime/train/step.h"

#include <chrono>
#include <cmath>

#include <torch/utils.h>

#include "common/error.h"

namespace ftune::train {
namespace {

struct Micro {
  model::ForwardInputs in;
  at::Tensor labels;
};

at::Tensor to_tensor(const std::vector<int32_t>& v, std::vector<int64_t> shape, at::Device device) {
  return at::from_blob(const_cast<int32_t*>(v.data()), shape, at::kInt).to(device, at::kLong);
}

bool packed_rows(const data::ReaderConfig& d) { return d.packing == "pack" || d.reset_position_ids; }

// Rows [r0, r1) of a batch as one forward; document bounds only where documents are packed or
// positions restart (otherwise each row is one causal sequence and the fast kernels apply).
Micro micro_batch(const data::Batch& b, int64_t r0, int64_t r1, bool packed, at::Device device) {
  const int64_t t = b.seq_len, n = (r1 - r0) * t;
  auto slice = [&](const std::vector<int32_t>& v) {
    return std::vector<int32_t>(v.begin() + r0 * t, v.begin() + r1 * t);
  };
  Micro m;
  m.in.ids = to_tensor(slice(b.input_ids), {r1 - r0, t}, device);
  m.labels = to_tensor(slice(b.labels), {r1 - r0, t}, device);
  m.in.positions = to_tensor(slice(b.position_ids), {r1 - r0, t}, device);
  if (packed) {
    std::vector<int32_t> cu;
    for (int32_t c : b.cu_seqlens)
      if (c >= r0 * t && c <= r1 * t) cu.push_back(int32_t(c - r0 * t));
    FTUNE_CHECK(!cu.empty() && cu.front() == 0 && cu.back() == n, "rows must not share documents");
    m.in.cu_seqlens = at::tensor(cu, at::kInt).to(device);
    m.in.max_seqlen = b.max_seqlen;
  }
  return m;
}

double comm_seconds(const sharding::CommCounters& c) {
  return c.all_gather_s + c.reduce_scatter_s + c.all_reduce_s;
}

// Dropout draws from a generator seeded by (seed, step, rank, micro-batch) rather than one
// stream carried along: a resumed run draws exactly what the uninterrupted one did, and the
// checkpoint needs no generator state.
void seed_dropout(int64_t seed, int64_t step, int rank, int64_t micro) {
  uint64_t h = uint64_t(seed) * 0x9E3779B97F4A7C15ull;
  for (uint64_t v : {uint64_t(step), uint64_t(rank), uint64_t(micro)}) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  }
  torch::manual_seed(h >> 1);
}

}  // namespace

Optimizer::Optimizer(const OptimSection& cfg, const std::vector<sharding::OptimParam>& params) : cfg_(cfg) {
  if (cfg_.name == "sgd") sgd_ = std::make_unique<sharding::SGD>(params);
  else if (cfg_.offload) offloaded_ = std::make_unique<sharding::OffloadedAdamW>(params);
  else adamw_ = std::make_unique<sharding::AdamW>(params);
}

void Optimizer::step(double lr) {
  const sharding::AdamWConfig adamw{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
  if (sgd_) sgd_->step({lr, cfg_.momentum, cfg_.weight_decay});
  else if (offloaded_) offloaded_->step(adamw);
  else adamw_->step(adamw);
}

void Optimizer::zero_grad() {
  if (sgd_) sgd_->zero_grad();
  else if (offloaded_) offloaded_->zero_grad();
  else adamw_->zero_grad();
}

OptimizerState Optimizer::checkpoint_view(std::vector<sharding::OptimParam>& params) {
  OptimizerState v;
  v.params = &params;
  v.state = [this](size_t i) {
    return sgd_ ? sgd_->state(i) : offloaded_ ? offloaded_->state(i) : adamw_->state(i);
  };
  v.steps = [this] { return sgd_ ? steps_ : offloaded_ ? offloaded_->steps() : adamw_->steps(); };
  v.set_steps = [this](int64_t n) {
    steps_ = n;
    if (adamw_) adamw_->set_steps(n);
    if (offloaded_) offloaded_->set_steps(n);  // also re-reads the masters from the restored slices
  };
  return v;
}

StepResult train_step(const TrainConfig& cfg, Run& run, Rank& rank, data::TokenShardReader& reader,
                      Optimizer& optim, int64_t step) {
  auto t0 = std::chrono::steady_clock::now();
  const double comm_before = comm_seconds(run.engine->counters());
  data::Batch b = reader.next();
  const double data_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t targets = all_sum_i64(*rank.comm, b.target_tokens);
  const int64_t micro = cfg.train.micro_batch > 0 ? cfg.train.micro_batch : b.rows;
  const bool dropout = uses_lora(cfg.method.name) && cfg.lora.dropout > 0;
  // Summed on the device: one host sync per step (below), not one per micro-batch.
  at::Tensor loss_sum = at::zeros({}, at::TensorOptions(at::kFloat).device(rank.device));
  for (int64_t r0 = 0; r0 < b.rows; r0 += micro) {
    if (dropout) seed_dropout(cfg.train.seed, step, rank.world.rank, r0 / micro);
    Micro m = micro_batch(b, r0, r0 + micro, packed_rows(cfg.data), rank.device);
    at::Tensor loss = run.model->loss(m.in, m.labels, cfg.train.loss_chunk);
    (loss / double(std::max<int64_t>(1, targets))).backward();
    loss_sum += loss.detach().to(at::kFloat);
  }
  run.engine->finish_backward();
  StepResult r;
  r.loss = all_sum_f32(*rank.comm, loss_sum.item<float>()) / double(std::max<int64_t>(1, targets));
  r.grad_norm = run.engine->grad_norm();
  r.tokens = targets;
  r.positions = cfg.data.global_batch * cfg.data.seq_len;
  r.lr = learning_rate(cfg.optim, cfg.schedule, step, run.steps);
  r.skipped = !std::isfinite(r.loss) || !std::isfinite(r.grad_norm);
  if (!r.skipped) {
    sharding::clip_gradients(run.params, r.grad_norm, cfg.train.grad_clip);
    optim.step(r.lr);
  }
  optim.zero_grad();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.data_s = data_s;
  r.comm_s = comm_seconds(run.engine->counters()) - comm_before;
  return r;
}

double Eval::metric(const std::string& name) const {
  if (name == "val_acc") return acc;
  if (name == "val_ppl") return ppl;
  return loss;
}

Eval evaluate(const TrainConfig& cfg, Run& run, Rank& rank) {
  auto reader = data::open_reader(cfg.data, data::Split::validation, rank.world.rank,
                                  rank.world.size, run.tokenizer_hash);
  at::Tensor stats = at::zeros({2}, at::kDouble);  // [loss sum, correct]: summed in double locally
  int64_t tokens = 0;
  for (int64_t s = 0; s < reader->steps_per_epoch(); ++s) {
    data::Batch b = reader->next();
    const int64_t micro = cfg.train.micro_batch > 0 ? cfg.train.micro_batch : b.rows;
    for (int64_t r0 = 0; r0 < b.rows; r0 += micro) {
      Micro m = micro_batch(b, r0, r0 + micro, packed_rows(cfg.data), rank.device);
      stats += run.model->eval_stats(m.in, m.labels, cfg.train.loss_chunk).cpu().to(at::kDouble);
    }
    tokens += b.target_tokens;
  }
  float sums[2] = {float(stats[0].item<double>()), float(stats[1].item<double>())};
  rank.comm->all_reduce(sums, sums, 2, comm::DType::f32, comm::ReduceOp::sum);
  Eval e;
  e.tokens = all_sum_i64(*rank.comm, tokens);
  if (e.tokens == 0) throw Error("the validation split has no trained tokens: raise data.val_fraction");
  e.loss = double(sums[0]) / double(e.tokens);
  e.ppl = std::exp(e.loss);
  e.acc = double(sums[1]) / double(e.tokens);
  return e;
}

}  // namespace ftune::train
