#include "runtime/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/sha256.h"
#include "data/reader/token_shard_reader.h"
#include "data/shards/shard_set.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/world.h"
#include "runtime/peft/lora.h"
#include "runtime/shard_model.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/metrics.h"
#include "runtime/train/preemption.h"
#include "runtime/train/startup_checks.h"
#include "runtime/comm/tensor_ops.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;
using model::CausalLM;

struct Rank {
  comm::World world;
  std::unique_ptr<comm::Communicator> comm;
  at::Device device{at::kCPU};
  comm::GpuBinding gpu;  // none on CPU
  bool root() const { return world.rank == 0; }
};

// [world] MPI (when launched by mpirun/srun), the communicator, this rank's device and its
// share of the cores.
// On CUDA: GPU `local rank` (one rank per GPU), collectives over NCCL on the tensors' stream.
Rank setup_rank(const TrainConfig& cfg) {
  Rank r;
  r.world = comm::init_world();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(int(std::max(1u, cores / unsigned(r.world.local_size))));
  std::string backend = "auto";
  if (cfg.model.device.rfind("cuda", 0) == 0) {
    const int gpus = at::hasCUDA() ? int(at::detail::getCUDAHooks().deviceCount()) : 0;
    r.gpu = comm::bind_gpu(r.world, gpus, std::getenv("CUDA_VISIBLE_DEVICES"));
    r.device = at::Device(at::kCUDA, int8_t(r.gpu.device));
    c10::cuda::set_device(r.device.index());
    backend = "nccl";
  } else if (cfg.model.device != "cpu") {
    throw Error("model.device = '" + cfg.model.device + "' is not cpu or cuda");
  }
  r.comm = comm::make_communicator(backend, r.world, comm::Timeouts{});
  if (r.device.is_cuda()) r.comm->set_compute_stream(c10::cuda::getCurrentCUDAStream().stream());
  comm::print_placement(r.world, *r.comm);
  run_startup_checks(cfg, r.world, *r.comm, r.gpu);
  return r;
}

// Rules that need the model's files: the sequence fits the model, and the shards were made
// with the model's tokenizer (the hash of its tokenizer.json; checked when the shards open).
std::optional<std::string> check_against_model(const TrainConfig& cfg, const model::ModelConfig& m) {
  if (cfg.data.seq_len > m.max_position_embeddings)
    throw Error("data.seq_len = " + std::to_string(cfg.data.seq_len) + " exceeds the model's " +
                "max_position_embeddings = " + std::to_string(m.max_position_embeddings) + " (" +
                cfg.model.path + "/config.json); lower data.seq_len");
  const fs::path tok = fs::path(cfg.model.path) / "tokenizer.json";
  if (!fs::exists(tok)) return std::nullopt;
  std::ifstream in(tok, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return sha256_hex(bytes);
}

at::ScalarType compute_dtype(const TrainConfig& cfg) {
  return cfg.model.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
}

struct Run {
  std::shared_ptr<CausalLM> model;
  std::unique_ptr<sharding::ShardedUnits> engine;
  std::vector<sharding::OptimParam> params;
  std::vector<std::string> lora_targets;
  model::ModelConfig config;
  std::optional<std::string> tokenizer_hash;  // the model's; the shards must carry it
};

// [model] Full: the model is built without memory and each rank reads only its slices. LoRA:
// the frozen base is loaded on every rank (or sliced when method.shard = sharded) and the
// adapters attached.
Run build_model(const TrainConfig& cfg, Rank& rank) {
  Run run;
  run.config = model::load_model_dir_config(cfg.model.path);
  run.tokenizer_hash = check_against_model(cfg, run.config);
  data::ShardSet::open(cfg.data.shards, run.tokenizer_hash);  // refused here, before the weights load
  sharding::EngineOptions o;
  o.compute_dtype = compute_dtype(cfg);
  o.activation_checkpointing = cfg.train.activation_checkpointing == "on";
  o.device = rank.device;
  if (cfg.method.name == "full") {
    o.mode = sharding::ShardMode::full;
    run.model = std::make_shared<CausalLM>(run.config, at::TensorOptions(at::kFloat).device(at::kMeta));
    run.engine = model::shard_model(*run.model, *rank.comm, nullptr, o, /*take_weights=*/false);
    model::load_shards(*run.engine, cfg.model.path);
  } else {
    const bool sliced = cfg.method.shard == "sharded";
    o.mode = sliced ? sharding::ShardMode::frozen_sharded : sharding::ShardMode::frozen_replicated;
    run.model = model::load_model(cfg.model.path,
                                  at::TensorOptions(sliced ? at::kFloat : o.compute_dtype).device(rank.device));
    peft::LoraOptions lo{cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.use_rslora,
                         cfg.lora.target_modules};
    run.lora_targets = peft::attach_lora(*run.model, lo, uint64_t(cfg.train.seed));
    if (rank.root()) std::fprintf(stderr, "[train] %s\n", peft::trainable_summary(*run.model).c_str());
    run.engine = model::shard_model(*run.model, *rank.comm, nullptr, o, /*take_weights=*/true);
  }
  run.params = run.engine->optim_params();
  return run;
}

struct Micro {
  model::ForwardInputs in;
  at::Tensor labels;
};

at::Tensor to_tensor(const std::vector<int32_t>& v, std::vector<int64_t> shape, at::Device device) {
  return at::from_blob(const_cast<int32_t*>(v.data()), shape, at::kInt).to(device, at::kLong);
}

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

int64_t all_sum_i64(comm::Communicator& comm, int64_t v) {
  comm.all_reduce(&v, &v, 1, comm::DType::i64, comm::ReduceOp::sum);
  return v;
}

float all_sum_f32(comm::Communicator& comm, float v) {
  comm.all_reduce(&v, &v, 1, comm::DType::f32, comm::ReduceOp::sum);
  return v;
}

bool packed_rows(const data::ReaderConfig& d) { return d.packing == "pack" || d.reset_position_ids; }

struct Eval {
  double loss = 0, ppl = 0, acc = 0;
  int64_t tokens = 0;
};

// [evaluate] Every held-out sample once (one epoch of the validation split).
Eval evaluate(const TrainConfig& cfg, Run& run, Rank& rank) {
  auto reader = data::open_reader(cfg.data, data::Split::validation, rank.world.rank,
                                  rank.world.size, run.tokenizer_hash);
  at::Tensor stats = at::zeros({2}, at::kFloat);
  int64_t tokens = 0;
  for (int64_t s = 0; s < reader->steps_per_epoch(); ++s) {
    data::Batch b = reader->next();
    Micro m = micro_batch(b, 0, b.rows, packed_rows(cfg.data), rank.device);
    stats += run.model->eval_stats(m.in, m.labels, cfg.train.loss_chunk).cpu();
    tokens += b.target_tokens;
  }
  stats = stats.contiguous();
  rank.comm->all_reduce(stats.data_ptr(), stats.data_ptr(), 2, comm::DType::f32, comm::ReduceOp::sum);
  Eval e;
  e.tokens = all_sum_i64(*rank.comm, tokens);
  if (e.tokens == 0) throw Error("the validation split has no trained tokens: raise data.val_fraction");
  e.loss = stats[0].item<double>() / double(e.tokens);
  e.ppl = std::exp(e.loss);
  e.acc = stats[1].item<double>() / double(e.tokens);
  return e;
}

bool has_validation(const data::ReaderConfig& d) { return !d.val_shards.empty() || d.val_fraction > 0; }

// [export] Full: one safetensors shard per unit, gathered unit by unit (rank 0 writes; no rank
// holds the whole model). LoRA: PEFT's adapter_config.json + adapter_model.safetensors.
void export_full(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  const at::ScalarType dtype = model::parse_scalar_type(run.config.dtype);
  std::unique_ptr<st::ShardedCheckpointWriter> writer;
  if (rank.root()) writer = std::make_unique<st::ShardedCheckpointWriter>(dir, run.engine->num_units());
  for (size_t u = 0; u < run.engine->num_units(); ++u) {
    auto tensors = run.engine->gather_unit(u);  // collective
    if (!rank.root()) continue;
    std::vector<at::Tensor> keep;
    std::vector<st::TensorView> views;
    for (auto& [name, t] : tensors) {
      keep.push_back(t.to(at::kCPU, dtype).contiguous());
      views.push_back({name, model::to_st_dtype(dtype), keep.back().sizes().vec(), keep.back().data_ptr()});
    }
    writer->write_shard(u + 1, views);
  }
  if (!rank.root()) return;
  writer->finish();
  model::write_model_files(run.config, dtype, cfg.model.path, dir);
}

void export_lora(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  if (!rank.root()) return;  // adapters are replicated: rank 0's are everyone's
  fs::create_directories(dir);
  std::vector<at::Tensor> keep;
  std::vector<st::TensorView> views;
  for (const auto& item : run.model->named_parameters()) {
    if (item.key().find(".lora.lora_") == std::string::npos) continue;
    keep.push_back(item.value().detach().to(at::kCPU, at::kFloat).contiguous());
    views.push_back({peft::peft_key(item.key()), st::DType::F32, keep.back().sizes().vec(),
                     keep.back().data_ptr()});
  }
  st::write_file(dir + "/adapter_model.safetensors", views, {{"format", "pt"}});
  peft::LoraOptions lo;
  lo.target_modules = cfg.lora.target_modules;
  const std::vector<std::string> modules = lo.resolved_targets();
  nlohmann::json c = {{"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", cfg.lora.r},
                      {"lora_alpha", cfg.lora.alpha}, {"lora_dropout", cfg.lora.dropout},
                      {"target_modules", modules}, {"bias", "none"}, {"use_rslora", cfg.lora.use_rslora},
                      {"fan_in_fan_out", false}, {"inference_mode", true},
                      {"base_model_name_or_path", fs::absolute(cfg.model.path).string()}};
  std::ofstream(dir + "/adapter_config.json") << c.dump(2) << "\n";
}

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;       // trained (target) tokens of the global batch
  double seconds = 0;       // [s] wall time of the step on this rank
  double data_s = 0;        // [s] of it waiting for the reader
  double comm_s = 0;        // [s] of it in the engine's collectives
  bool skipped = false;
};

double comm_seconds(const sharding::CommCounters& c) {
  return c.all_gather_s + c.reduce_scatter_s + c.all_reduce_s;
}

// [loop] One optimizer step: every micro-batch of this rank's share, the loss normalised by
// the trained tokens of the whole global batch, then reduce, clip, update.
template <class Optim>
StepResult train_step(const TrainConfig& cfg, Run& run, Rank& rank, data::TokenShardReader& reader,
                      Optim& optim, int64_t step) {
  auto t0 = std::chrono::steady_clock::now();
  const double comm_before = comm_seconds(run.engine->counters());
  data::Batch b = reader.next();
  const double data_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t targets = all_sum_i64(*rank.comm, b.target_tokens);
  const int64_t micro = cfg.train.micro_batch > 0 ? cfg.train.micro_batch : b.rows;
  float loss_sum = 0;
  for (int64_t r0 = 0; r0 < b.rows; r0 += micro) {
    Micro m = micro_batch(b, r0, r0 + micro, packed_rows(cfg.data), rank.device);
    at::Tensor loss = run.model->loss(m.in, m.labels, cfg.train.loss_chunk);
    (loss / double(std::max<int64_t>(1, targets))).backward();
    loss_sum += loss.detach().cpu().item<float>();
  }
  run.engine->finish_backward();
  StepResult r;
  r.loss = all_sum_f32(*rank.comm, loss_sum) / double(std::max<int64_t>(1, targets));
  r.grad_norm = run.engine->grad_norm();
  r.tokens = targets;
  r.lr = learning_rate(cfg.optim, cfg.schedule, step, cfg.train.steps);
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

// The optimizers behind one step(lr) call.
struct Optimizer {
  Optimizer(const TrainConfig& cfg, const std::vector<sharding::OptimParam>& params) : cfg_(cfg.optim) {
    if (cfg_.name == "sgd") sgd_ = std::make_unique<sharding::SGD>(params);
    else adamw_ = std::make_unique<sharding::AdamW>(params);
  }
  void step(double lr) {
    if (sgd_) sgd_->step({lr, cfg_.momentum, cfg_.weight_decay});
    else adamw_->step({lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay});
  }
  void zero_grad() { sgd_ ? sgd_->zero_grad() : adamw_->zero_grad(); }
  // What checkpoints save and restore.
  OptimizerState checkpoint_view(std::vector<sharding::OptimParam>& params) {
    OptimizerState v;
    v.params = &params;
    v.state = [this](size_t i) { return sgd_ ? sgd_->state(i) : adamw_->state(i); };
    v.steps = [this] { return sgd_ ? steps_ : adamw_->steps(); };
    v.set_steps = [this](int64_t n) {
      steps_ = n;
      if (adamw_) adamw_->set_steps(n);
    };
    return v;
  }
  int64_t steps_ = 0;  // SGD keeps no count of its own
  OptimSection cfg_;
  std::unique_ptr<sharding::AdamW> adamw_;
  std::unique_ptr<sharding::SGD> sgd_;
};

void log_eval(MetricsLog& log, const Eval& e, int64_t step, bool root) {
  log.write(step, {{"val_loss", e.loss}, {"val_ppl", e.ppl}, {"val_acc", e.acc}});
  if (root)
    std::fprintf(stderr, "[eval] step %lld: val_loss %.4f val_ppl %.3f val_acc %.4f (%lld tokens)\n",
                 (long long)step, e.loss, e.ppl, e.acc, (long long)e.tokens);
}

DataFingerprint fingerprint(const data::ReaderConfig& d) {
  return {d.shards, d.val_shards, d.packing, d.seq_len, d.global_batch, d.seed, d.val_fraction};
}

// Where each rank's step went (compute, communication, waiting for data), gathered to rank 0
// as the range over ranks and the slowest rank: a straggler or a starved reader shows here.
struct TimeSplit {
  double lo[3], hi[3];
  int slowest[3];
};

TimeSplit split_over_ranks(comm::Communicator& comm, const StepResult& r) {
  const float mine[3] = {float(r.seconds - r.comm_s - r.data_s), float(r.comm_s), float(r.data_s)};
  std::vector<float> all(3 * size_t(comm.size()));
  comm.all_gather(mine, all.data(), 3, comm::DType::f32);
  TimeSplit t{};
  for (int k = 0; k < 3; ++k) {
    t.lo[k] = t.hi[k] = all[size_t(k)];
    for (int q = 1; q < comm.size(); ++q) {
      const double v = all[3 * size_t(q) + size_t(k)];
      t.lo[k] = std::min(t.lo[k], v);
      if (v > t.hi[k]) {
        t.hi[k] = v;
        t.slowest[k] = q;
      }
    }
  }
  return t;
}

void log_step(MetricsLog& log, const StepResult& r, const TrainState& st, int64_t steps, double secs,
              int64_t run_tokens, Rank& rank) {
  const bool root = rank.root();
  const TimeSplit t = split_over_ranks(*rank.comm, r);
  const double tok_s = double(run_tokens) / std::max(secs, 1e-9);
  log.write(st.step, {{"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                      {"tokens_per_s", tok_s}, {"step_s", r.seconds}, {"skipped", double(st.skipped)},
                      {"compute_s_max", t.hi[0]}, {"comm_s_max", t.hi[1]}, {"data_s_max", t.hi[2]}});
  if (root)
    std::fprintf(stderr, "[time] step %lld over %d rank(s): compute %.3f-%.3f s (slowest rank %d), comm "
                 "%.3f-%.3f s (rank %d), data wait %.3f-%.3f s (rank %d)\n",
                 (long long)st.step, rank.comm->size(), t.lo[0], t.hi[0], t.slowest[0], t.lo[1], t.hi[1],
                 t.slowest[1], t.lo[2], t.hi[2], t.slowest[2]);
  if (root)
    std::fprintf(stderr, "[train] step %lld/%lld loss %.4f lr %.3g grad_norm %.3f %.0f trained tok/s%s\n",
                 (long long)st.step, (long long)steps, r.loss, r.lr, r.grad_norm, tok_s,
                 r.skipped ? " (skipped: non-finite)" : "");
}

int train(const TrainConfig& cfg) {
  Rank rank = setup_rank(cfg);
  validate(cfg, rank.world.size);
  if (rank.root()) {
    fs::create_directories(cfg.train.out);
    std::ofstream(cfg.train.out + "/config.toml") << cfg.resolved_toml;
  }
  Run run = build_model(cfg, rank);
  Optimizer optim(cfg, run.params);
  OptimizerState optim_view = optim.checkpoint_view(run.params);
  TrainState state;
  if (auto from = checkpoint_to_resume(cfg.train.resume, cfg.train.out)) {
    state = load_checkpoint(*from, fingerprint(cfg.data), *run.engine, optim_view, *rank.comm);
    if (rank.root())
      std::fprintf(stderr, "[train] resumed from %s at step %lld\n", from->c_str(), (long long)state.step);
  }
  auto reader = data::open_reader(cfg.data, data::Split::train, rank.world.rank, rank.world.size,
                                  run.tokenizer_hash, state.reader);
  rank.comm->set_phase(comm::Phase::step);
  MetricsLog log(rank.root() ? cfg.train.out : "");
  const bool eval = has_validation(cfg.data);
  if (eval && state.step == 0) log_eval(log, evaluate(cfg, run, rank), 0, rank.root());
  auto save = [&] {
    rank.comm->set_phase(comm::Phase::save);
    std::string dir = save_checkpoint(cfg.train.out, state, fingerprint(cfg.data), cfg.resolved_toml,
                                      *run.engine, optim_view, *rank.comm, int(cfg.train.keep_checkpoints));
    rank.comm->set_phase(comm::Phase::step);
    if (rank.root()) std::fprintf(stderr, "[train] checkpoint %s\n", dir.c_str());
  };
  auto t0 = std::chrono::steady_clock::now();
  int64_t run_tokens = 0, run_steps = 0;
  while (state.step < cfg.train.steps) {
    StepResult r = train_step(cfg, run, rank, *reader, optim, state.step);
    ++state.step;
    ++run_steps;
    state.tokens += r.tokens;
    run_tokens += r.tokens;
    state.reader = reader->state();
    if (r.skipped && ++state.skipped > cfg.train.max_skipped_steps)
      throw Error("stopping: " + std::to_string(state.skipped) + " steps had a non-finite loss or "
                  "gradient (train.max_skipped_steps = " + std::to_string(cfg.train.max_skipped_steps) +
                  "); lower optim.lr or check the data");
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool last = state.step == cfg.train.steps;
    if (state.step % std::max<int64_t>(1, cfg.train.log_every) == 0 || last)
      log_step(log, r, state, cfg.train.steps, secs, run_tokens, rank);
    if (eval && cfg.train.eval_every > 0 && state.step % cfg.train.eval_every == 0 && !last)
      log_eval(log, evaluate(cfg, run, rank), state.step, rank.root());
    const bool stop = cfg.train.stop_after > 0 && run_steps >= cfg.train.stop_after && !last;
    const bool preempted = !last && stop_agreed(*rank.comm);
    if (last || stop || preempted || (cfg.train.checkpoint_every > 0 && state.step % cfg.train.checkpoint_every == 0))
      save();
    if (stop) {
      if (rank.root())
        std::fprintf(stderr, "[train] stopping after %lld steps (train.stop_after); resume with the same command\n",
                     (long long)run_steps);
      return 0;
    }
    if (preempted) {
      if (rank.root()) std::fprintf(stderr, "[train] stopping on a signal at step %lld; resume with the same command\n",
                                    (long long)state.step);
      return kExitRequeue;
    }
  }
  if (eval && run_steps > 0) log_eval(log, evaluate(cfg, run, rank), cfg.train.steps, rank.root());
  rank.comm->set_phase(comm::Phase::save);
  const std::string final_dir = cfg.train.out + "/final";
  if (cfg.method.name == "full") export_full(cfg, run, rank, final_dir);
  else export_lora(cfg, run, rank, final_dir);
  rank.comm->barrier();
  if (rank.root()) write_completion_marker(cfg.train.out, state.step);
  if (rank.root()) std::fprintf(stderr, "[train] wrote %s\n", final_dir.c_str());
  return 0;
}

}  // namespace

int run_train(const TrainConfig& cfg) {
  install_stop_signals();
  return comm::run_or_abort([&] { return train(cfg); });
}

}  // namespace ftune::train
