// One rank of the sharding equivalence tests (test_sharding_mpi.cpp runs it under mpirun, and
// alone for the reference). Trains a tiny Llama for a few steps on a fixed global batch, each
// rank on its rows, and writes the losses and the final full parameters from rank 0.
//
//   sharding_rank OUT.safetensors [--engine 0|1] [--mode full|frozen_sharded|frozen_replicated]
//                 [--ac 0|1] [--hybrid 0|1] [--optim adamw|sgd] [--tied 0|1] [--steps N]
//                 [--load DIR] [--stats FILE] [--save DIR] [--big 1]
//                 [--fault stop|kill|throw --timeout S --pid-dir DIR]
// --engine 0 is the reference: one process, no engine, the whole batch. --save writes the
// initial model as an HF directory; --load builds the model on the meta device (no memory) and
// reads each rank's slices from one, writing "bytes_read rss_before rss_after" to FILE.<rank>
// (bytes read as the kernel counts them, /proc/self/io rchar; resident set from /proc/self/status).
#include <csignal>
#include <cstdio>

#include <unistd.h>
#include <fstream>
#include <map>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "common/error.h"
#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/world.h"
#include "runtime/model/llama.h"
#include "runtime/shard_model.h"
#include "runtime/comm/tensor_ops.h"
#include "sharding/optimizer.h"

namespace {

using namespace ftune;

struct Args {
  std::string out;
  bool engine = true;
  std::string mode = "full";
  bool ac = true, hybrid = false, tied = false;
  std::string optim = "adamw";
  int steps = 3;
  std::string load, stats, save;
  bool big = false;
  std::string fault, pid_dir;  // the last rank fails inside layer 1's forward of step 1
  double timeout_s = 60;
};

Args parse(int argc, char** argv) {
  Args a;
  a.out = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--engine") a.engine = v == "1";
    else if (k == "--mode") a.mode = v;
    else if (k == "--ac") a.ac = v == "1";
    else if (k == "--hybrid") a.hybrid = v == "1";
    else if (k == "--tied") a.tied = v == "1";
    else if (k == "--optim") a.optim = v;
    else if (k == "--steps") a.steps = std::stoi(v);
    else if (k == "--load") a.load = v;
    else if (k == "--stats") a.stats = v;
    else if (k == "--save") a.save = v;
    else if (k == "--big") a.big = v == "1";
    else if (k == "--fault") a.fault = v;
    else if (k == "--timeout") a.timeout_s = std::stod(v);
    else if (k == "--pid-dir") a.pid_dir = v;
    else throw Error("unknown flag " + k);
  }
  return a;
}

// Unit sizes not divisible by 3 or 4, so slices end inside tensors and the last is padded.
model::ModelConfig test_config(bool tied, bool big) {
  model::ModelConfig c = model::preset("tiny-llama");
  if (big) {  // ~21 M parameters (84 MB in fp32): large enough to see 1/N in a process's RSS
    c.vocab_size = 8001;
    c.hidden_size = 512;
    c.num_heads = 8;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.intermediate_size = 1377;
    c.num_layers = 4;
    c.tie_word_embeddings = tied;
    return c;
  }
  c.vocab_size = 101;
  c.hidden_size = 14;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 6;
  c.intermediate_size = 37;
  c.tie_word_embeddings = tied;
  return c;
}

// A LoRA-shaped adapter (x A^T B^T) for the frozen-base modes; B starts non-zero so that both
// matrices get gradients from the first step.
struct TestAdapter : model::LinearAdapter {
  TestAdapter(int64_t in, int64_t out, at::Generator& gen) {
    a = register_parameter("lora_A", at::empty({3, in}).normal_(0, 0.3, gen));
    b = register_parameter("lora_B", at::empty({out, 3}).normal_(0, 0.3, gen));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& base, const model::LinearImpl&) override {
    return base + at::linear(at::linear(x, a), b);
  }
  at::Tensor a, b;
};

void add_adapters(model::CausalLM& m) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(99);
  for (auto& p : m.parameters()) p.requires_grad_(false);
  for (auto& [name, linear] : m.named_linears()) {
    if (name.find("q_proj") == std::string::npos && name.find("down_proj") == std::string::npos)
      continue;
    linear->set_adapter(std::make_shared<TestAdapter>(linear->in_features, linear->out_features, gen),
                        "lora");
  }
}

struct Batch {
  at::Tensor ids, labels;  // [rows, T]
  int64_t global_targets = 0;
};

// 12 rows of 10 tokens; rank r of w takes rows [r * 12 / w, (r + 1) * 12 / w).
Batch batch(int step, int rank, int world, int64_t vocab) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  at::Tensor ids = at::randint(vocab, {12, 10}, gen, at::kLong);
  at::Tensor labels = at::randint(vocab, {12, 10}, gen, at::kLong);
  labels.index_put_({at::indexing::Slice(), 0}, model::CausalLM::kIgnoreLabel);
  Batch b;
  b.global_targets = labels.ne(model::CausalLM::kIgnoreLabel).sum().item<int64_t>();
  const int64_t rows = 12 / world;
  b.ids = ids.narrow(0, rank * rows, rows);
  b.labels = labels.narrow(0, rank * rows, rows);
  return b;
}

std::vector<sharding::OptimParam> whole_params(model::CausalLM& m) {
  std::vector<sharding::OptimParam> out;
  for (auto& item : m.named_parameters()) {
    at::Tensor& t = item.value();
    if (!t.requires_grad()) continue;
    sharding::OptimParam p{t, {}};
    if (sharding::decays_by_default(item.key(), t.dim())) p.decay.emplace_back(0, t.numel());
    out.push_back(p);
  }
  return out;
}

int64_t bytes_read_by_process() {  // rchar: bytes this process read through syscalls
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value)
    if (key == "rchar:") return value;
  return 0;
}

int64_t resident_bytes() {  // VmRSS of this process
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

int g_step = 0;

// Wraps the engine's runner: the last rank stops, dies or throws when layer 1 runs in step 1,
// while its peers go on into that step's collectives.
void inject_fault(model::CausalLM& m, sharding::ShardedUnits& engine, const Args& args,
                  comm::Communicator& comm) {
  const bool victim = comm.rank() == comm.size() - 1;
  if (!args.pid_dir.empty()) {
    std::ofstream(args.pid_dir + "/pid." + std::to_string(comm.rank())) << getpid() << "\n";
  }
  m.set_unit_runner([&engine, victim, mode = args.fault](const model::UnitCall& call,
                                                          const at::Tensor& input) {
    if (victim && g_step == 1 && call.unit == 2) {
      if (mode == "stop") raise(SIGSTOP);
      if (mode == "kill") raise(SIGKILL);
      if (mode == "throw") throw Error("injected fault in layer 1 of step 1");
    }
    return engine.run(call.uses, call.run, input);
  });
}

int run(const Args& args) {
  at::set_num_threads(1);
  comm::World world = comm::init_world();
  comm::Timeouts timeouts;
  timeouts.step_s = args.timeout_s;
  auto comm = comm::make_communicator("auto", world, timeouts);
  std::unique_ptr<comm::Communicator> node, replicas;
  comm::Communicator* shard = comm.get();
  if (args.hybrid) {  // 4 ranks as 2 x 2: slices within {0,1} and {2,3}, replicas across
    node = comm->split(comm->rank() / 2, comm->rank());
    replicas = comm->split(comm->rank() % 2, comm->rank());
    shard = node.get();
  }
  model::ModelConfig cfg = test_config(args.tied, args.big);
  const bool load = !args.load.empty();
  const int64_t rss_before = resident_bytes();
  auto m = std::make_shared<model::CausalLM>(
      cfg, at::TensorOptions(at::kFloat).device(load ? at::kMeta : at::kCPU));
  if (!load) m->init_weights(7);
  if (!args.save.empty()) {
    model::save_model(*m, args.save, {/*max_shard_bytes=*/20'000'000, "", ""});
    return 0;
  }
  const bool frozen = args.mode != "full";
  if (frozen) add_adapters(*m);

  std::unique_ptr<sharding::ShardedUnits> engine;
  std::vector<sharding::OptimParam> params;
  if (args.engine) {
    sharding::EngineOptions o;
    o.mode = args.mode == "full" ? sharding::ShardMode::full
             : args.mode == "frozen_sharded" ? sharding::ShardMode::frozen_sharded
                                             : sharding::ShardMode::frozen_replicated;
    o.activation_checkpointing = args.ac;
    engine = model::shard_model(*m, *shard, replicas.get(), o, !load);
    if (!args.fault.empty()) inject_fault(*m, *engine, args, *comm);
    const int64_t read_before = bytes_read_by_process();
    if (load) model::load_shards(*engine, args.load);
    const int64_t read = bytes_read_by_process() - read_before;
    params = engine->optim_params();
    if (!args.stats.empty()) {
      sharding::AdamW with_state(params);  // the moments exist from construction
      std::ofstream f(args.stats + "." + std::to_string(comm->rank()));
      f << read << " " << rss_before << " " << resident_bytes() << "\n";
      comm->barrier();
      return 0;
    }
  } else {
    params = whole_params(*m);
  }
  // Set-up is done: collectives from here on get the step timeout.
  for (comm::Communicator* c : {comm.get(), node.get(), replicas.get()})
    if (c != nullptr) c->set_phase(comm::Phase::step);
  sharding::AdamW adamw(params);
  sharding::SGD sgd(params);
  std::map<std::string, at::Tensor> out;
  for (int step = 0; step < args.steps; ++step) {
    g_step = step;
    Batch b = batch(step, comm->rank(), comm->size(), cfg.vocab_size);
    model::ForwardInputs in;
    in.ids = b.ids;
    at::Tensor loss = m->loss(in, b.labels, /*chunk_tokens=*/16) / double(b.global_targets);
    loss.backward();
    at::Tensor total = loss.detach().clone().contiguous();
    comm::all_reduce(*comm, total, comm::ReduceOp::sum);
    out["loss." + std::to_string(step)] = total;
    double norm = 0;
    if (engine) {
      engine->finish_backward();
      norm = engine->grad_norm();
    } else {
      at::Tensor sq = at::zeros({}, at::kDouble);
      for (auto& p : params) sq += p.param.grad().to(at::kDouble).pow(2).sum();
      norm = std::sqrt(sq.item<double>());
    }
    out["grad_norm." + std::to_string(step)] = at::tensor({norm}, at::kDouble);
    sharding::clip_gradients(params, norm, 0.5);
    if (args.optim == "sgd") {
      sgd.step({0.05, 0.9, 0.01});
      sgd.zero_grad();
    } else {
      adamw.step({1e-2, 0.9, 0.99, 1e-8, 0.1});
      adamw.zero_grad();
    }
  }
  if (engine) {
    for (size_t u = 0; u < engine->num_units(); ++u)
      for (auto& [name, t] : engine->gather_unit(u)) out["param." + name] = t;
  } else {
    for (auto& item : m->named_parameters()) out["param." + item.key()] = item.value().detach();
  }
  if (comm->rank() == 0) {
    std::vector<st::TensorView> views;
    std::vector<at::Tensor> keep;
    for (auto& [name, t] : out) {
      keep.push_back(t.to(at::kDouble).contiguous());
      views.push_back({name, st::DType::F64, keep.back().sizes().vec(), keep.back().data_ptr()});
    }
    st::write_file(args.out, views);
  }
  comm->barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: sharding_rank OUT.safetensors [--flag value ...]\n");
    return 2;
  }
  return ftune::comm::run_or_abort([&] { return run(parse(argc, argv)); });
}
