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
#include "runtime/peft/bnb4bit.h"
#include "runtime/peft/lora.h"
#include "runtime/shard_model.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/export.h"
#include "runtime/train/fit_check.h"
#include "runtime/train/metrics.h"
#include "runtime/train/progress.h"
#include "runtime/train/run.h"
#include "runtime/train/step.h"
#include "runtime/train/preemption.h"
#include "runtime/train/startup_checks.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;
using model::CausalLM;

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
  if (cfg.comm.backend != "auto") backend = cfg.comm.backend;
  r.comm = comm::make_communicator(backend, r.world, cfg.comm.timeouts());
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

at::ScalarType dtype_of(const std::string& name) { return name == "bfloat16" ? at::kBFloat16 : at::kFloat; }

// With train.activation_checkpointing = every_k: layers 0, k, 2k, ... recompute; the embedding
// and head units always do (a tied head's call uses the embedding unit too).
std::vector<bool> checkpointed_units(const TrainConfig& cfg, int64_t layers) {
  if (cfg.train.activation_checkpointing != "every_k") return {};
  std::vector<bool> which(size_t(layers + 2), true);
  for (int64_t i = 0; i < layers; ++i) which[size_t(i + 1)] = i % cfg.train.activation_checkpointing_k == 0;
  return which;
}

// [model] Full: the model is built without memory and each rank reads only its slices. LoRA:
// the frozen base is loaded on every rank (or sliced when method.shard = sharded), the
// adapters attached and the biases lora.bias names set to train.
Run build_model(const TrainConfig& cfg, Rank& rank) {
  Run run;
  run.config = model::load_model_dir_config(cfg.model.path);
  run.tokenizer_hash = check_against_model(cfg, run.config);
  data::ShardSet::open(cfg.data.shards, run.tokenizer_hash);  // refused here, before the weights load
  sharding::EngineOptions o;
  o.compute_dtype = dtype_of(cfg.precision.compute);
  o.reduce_dtype = dtype_of(cfg.precision.reduce);
  o.activation_checkpointing = cfg.train.activation_checkpointing != "off";
  o.checkpoint_units = checkpointed_units(cfg, run.config.num_layers);
  o.device = rank.device;
  if (cfg.method.name == "full") {
    o.mode = sharding::ShardMode::full;
    run.model = std::make_shared<CausalLM>(run.config, at::TensorOptions(at::kFloat).device(at::kMeta));
    run.engine = model::shard_model(*run.model, *rank.comm, nullptr, o, /*take_weights=*/false);
    model::load_shards(*run.engine, cfg.model.path);
  } else {
    const peft::AdapterSpec spec = adapter_spec(cfg);
    spec.check();  // an unknown module is refused before the base loads
    const bool sliced = cfg.method.shard == "sharded";
    o.mode = sliced ? sharding::ShardMode::frozen_sharded : sharding::ShardMode::frozen_replicated;
    run.model = peft::load_base(cfg.model.path,
                                at::TensorOptions(sliced ? at::kFloat : o.compute_dtype).device(rank.device));
    const size_t biases = peft::attach_adapters(*run.model, spec, uint64_t(cfg.train.seed));
    if (cfg.lora.bias != "none" && biases == 0 && rank.root())
      std::fprintf(stderr, "[train] note: lora.bias = %s, but this model's %s have no biases\n",
                   cfg.lora.bias.c_str(), cfg.lora.bias == "all" ? "projections" : "adapted projections");
    if (rank.root()) std::fprintf(stderr, "[train] %s\n", peft::trainable_summary(*run.model).c_str());
    run.engine = model::shard_model(*run.model, *rank.comm, nullptr, o, /*take_weights=*/true);
  }
  run.params = run.engine->optim_params();
  return run;
}

bool has_validation(const data::ReaderConfig& d) { return !d.val_shards.empty() || d.val_fraction > 0; }

DataFingerprint fingerprint(const data::ReaderConfig& d) {
  return {d.shards, d.val_shards, d.packing, d.seq_len, d.global_batch, d.seed, d.val_fraction};
}

// The steps of the whole run: train.steps, or train.epochs passes over the training split.
int64_t total_steps(const TrainConfig& cfg, const data::TokenShardReader& reader, bool root) {
  if (cfg.train.epochs <= 0) return cfg.train.steps;
  const int64_t steps = cfg.train.epochs * reader.steps_per_epoch();
  if (root)
    std::fprintf(stderr, "[train] %lld epoch(s) of %lld steps: %lld steps\n", (long long)cfg.train.epochs,
                 (long long)reader.steps_per_epoch(), (long long)steps);
  return steps;
}

// The loop over steps, with evaluation, early stopping, checkpoints and the export.
class Loop {
 public:
  Loop(const TrainConfig& cfg, Rank& rank, Run& run)
      : cfg_(cfg), rank_(rank), run_(run), optim_(cfg.optim, run.params),
        optim_view_(optim_.checkpoint_view(run.params)), eval_(has_validation(cfg.data)) {
    state_.seed = cfg.train.seed;
  }

  int run() {
    resume();
    reader_ = data::open_reader(cfg_.data, data::Split::train, rank_.world.rank, rank_.world.size,
                                run_.tokenizer_hash, state_.reader);
    run_.steps = total_steps(cfg_, *reader_, rank_.root());
    rank_.comm->set_phase(comm::Phase::step);
    MetricsLog log(rank_.root() ? cfg_.train.out : "", cfg_.log.tensorboard);
    Progress progress(cfg_, run_, rank_, log);
    progress_ = &progress;
    if (eval_ && cfg_.eval.at_start && state_.step == 0) progress.eval(evaluate(cfg_, run_, rank_), 0);
    int64_t run_steps = 0;
    while (state_.step < run_.steps) {
      StepResult r = train_step(cfg_, run_, rank_, *reader_, optim_, state_.step);
      ++state_.step;
      ++run_steps;
      state_.tokens += r.tokens;
      state_.reader = reader_->state();
      count_skipped(r);
      const bool last = state_.step == run_.steps;
      progress.step(r, state_, last);
      const bool improved = evaluate_if_due(last);
      const bool early = stops_early();
      const bool stop = cfg_.train.stop_after > 0 && run_steps >= cfg_.train.stop_after && !last && !early;
      const StepRequests asked = agree_requests(*rank_.comm);  // signals (runtime/train/preemption.h)
      const bool preempted = asked.stop && !last && !early;
      if (last || early || stop || preempted || asked.save || due(cfg_.checkpoint.every) ||
          (improved && cfg_.eval.export_ == "best"))
        save();
      if (stop) {
        say("stopping after %lld steps (train.stop_after); resume with the same command", (long long)run_steps);
        return 0;
      }
      if (preempted) {
        say("stopping on a signal at step %lld; resume with the same command", (long long)state_.step);
        return kExitRequeue;
      }
      if (early) break;
    }
    finish();
    return 0;
  }

 private:
  template <class... A>
  void say(const char* fmt, A... args) const {
    if (!rank_.root()) return;
    std::fprintf(stderr, "[train] ");
    std::fprintf(stderr, fmt, args...);
    std::fprintf(stderr, "\n");
  }

  bool due(int64_t every) const { return every > 0 && state_.step % every == 0; }

  void resume() {
    if (auto from = checkpoint_to_resume(cfg_.checkpoint.resume, cfg_.train.out)) {
      state_ = load_checkpoint(*from, fingerprint(cfg_.data), *run_.engine, optim_view_, *rank_.comm);
      say("resumed from %s at step %lld", from->c_str(), (long long)state_.step);
    }
  }

  void count_skipped(const StepResult& r) {
    if (r.skipped && ++state_.skipped > cfg_.train.max_skipped_steps)
      throw Error("stopping: " + std::to_string(state_.skipped) + " steps had a non-finite loss or "
                  "gradient (train.max_skipped_steps = " + std::to_string(cfg_.train.max_skipped_steps) +
                  "); lower optim.lr or check the data");
  }

  // Evaluates every eval.every steps and after the last; returns whether eval.metric improved.
  bool evaluate_if_due(bool last) {
    if (!eval_ || !(last || due(cfg_.eval.every))) return false;
    const Eval e = evaluate(cfg_, run_, rank_);
    progress_->eval(e, state_.step);
    const double v = e.metric(cfg_.eval.metric);
    if (improves(cfg_.eval, v, state_.best)) {
      state_.best = v;
      state_.best_step = state_.step;
      state_.evals_since_best = 0;
      return true;
    }
    ++state_.evals_since_best;
    return false;
  }

  bool stops_early() const {
    if (cfg_.eval.patience <= 0 || state_.evals_since_best < cfg_.eval.patience) return false;
    say("early stop after step %lld: %s has not improved on %.4f (step %lld) for %lld evaluations "
        "(eval.patience)", (long long)state_.step, cfg_.eval.metric.c_str(), *state_.best,
        (long long)state_.best_step, (long long)state_.evals_since_best);
    return true;
  }

  void save() {
    rank_.comm->set_phase(comm::Phase::save);
    std::string dir = save_checkpoint(cfg_.train.out, state_, fingerprint(cfg_.data), cfg_.resolved_toml,
                                      *run_.engine, optim_view_, *rank_.comm, int(cfg_.checkpoint.keep),
                                      cfg_.eval.export_ == "best");
    rank_.comm->set_phase(comm::Phase::step);
    say("checkpoint %s", dir.c_str());
  }

  // [export] The last step, or with eval.export = best the best evaluation's checkpoint.
  void finish() {
    rank_.comm->set_phase(comm::Phase::save);
    if (cfg_.eval.export_ == "best" && state_.best && state_.best_step != state_.step) {
      auto best = best_checkpoint(cfg_.train.out);
      if (!best) throw Error("eval.export = best: the checkpoint of step " + std::to_string(state_.best_step) +
                             " is missing from " + cfg_.train.out + "/checkpoints");
      load_checkpoint(*best, fingerprint(cfg_.data), *run_.engine, optim_view_, *rank_.comm);
      say("exporting the best checkpoint: %s = %.4f at step %lld (%s)", cfg_.eval.metric.c_str(), *state_.best,
          (long long)state_.best_step, best->c_str());
    }
    const std::string final_dir = cfg_.train.out + "/final";
    export_model(cfg_, run_, rank_, final_dir);
    if (rank_.root()) write_completion_marker(cfg_.train.out, state_.step);
    say("wrote %s", final_dir.c_str());
  }

  const TrainConfig& cfg_;
  Rank& rank_;
  Run& run_;
  Optimizer optim_;
  OptimizerState optim_view_;
  TrainState state_;
  const bool eval_;
  std::unique_ptr<data::TokenShardReader> reader_;
  Progress* progress_ = nullptr;
};

int train(const TrainConfig& cfg) {
  Rank rank = setup_rank(cfg);
  validate(cfg, rank.world.size);
  if (rank.root()) {
    fs::create_directories(cfg.train.out);
    std::ofstream(cfg.train.out + "/config.toml") << cfg.resolved_toml;
  }
  check_fits(cfg, rank);
  Run run = build_model(cfg, rank);
  return Loop(cfg, rank, run).run();
}

}  // namespace

int run_train(const TrainConfig& cfg) {
  install_stop_signals();
  return comm::run_or_abort([&] { return train(cfg); });
}

}  // namespace ftune::train
