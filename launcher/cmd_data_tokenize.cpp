// `ftune data tokenize`: JSONL/text corpora -> HDF5 token shards (data/pipeline/pipeline.h).
// Alone it runs as one process; under mpirun/srun every rank makes its share of the work
// items, through ftune_comm adapted to the data layer's Group here (data/ links no
// communicator).
#include <iostream>
#include <memory>

#include "data/pipeline/pipeline.h"
#include "launcher/commands.h"
#include "runtime/comm/comm_config.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/world.h"

namespace ftune {
namespace {

// data::Group over a host-memory communicator (mpi backend).
class CommGroup : public data::Group {
 public:
  CommGroup(comm::World world, std::unique_ptr<comm::Communicator> comm)
      : world_(std::move(world)), comm_(std::move(comm)) {
    comm_->set_phase(comm::Phase::startup);
  }
  int rank() const override { return comm_->rank(); }
  int size() const override { return comm_->size(); }
  const std::string& host() const override { return world_.host; }
  void barrier() override { comm_->barrier(); }
  void work_started() override { comm_->set_phase(comm::Phase::step); }

  std::string broadcast(const std::string& bytes, int root) override {
    int64_t n = static_cast<int64_t>(bytes.size());
    comm_->broadcast(&n, 1, comm::DType::i64, root);
    std::string out = rank() == root ? bytes : std::string(static_cast<size_t>(n), '\0');
    if (n > 0) comm_->broadcast(out.data(), out.size(), comm::DType::u8, root);
    return out;
  }

  // Sizes first, then every rank's bytes padded to the longest.
  std::vector<std::string> all_gather(const std::string& bytes) override {
    const size_t ranks = static_cast<size_t>(size());
    int64_t mine = static_cast<int64_t>(bytes.size());
    std::vector<int64_t> sizes(ranks);
    comm_->all_gather(&mine, sizes.data(), 1, comm::DType::i64);
    size_t longest = 0;
    for (int64_t s : sizes) longest = std::max(longest, static_cast<size_t>(s));
    std::vector<std::string> out(ranks);
    if (longest == 0) return out;
    std::string send = bytes;
    send.resize(longest);
    std::string all(longest * ranks, '\0');
    comm_->all_gather(send.data(), all.data(), longest, comm::DType::u8);
    for (size_t r = 0; r < ranks; ++r) out[r] = all.substr(r * longest, static_cast<size_t>(sizes[r]));
    return out;
  }

  void sum(std::vector<int64_t>& values) override {
    if (!values.empty()) comm_->all_reduce(values.data(), values.data(), values.size(), comm::DType::i64, comm::ReduceOp::sum);
  }

 private:
  comm::World world_;
  std::unique_ptr<comm::Communicator> comm_;
};

int run_job(const data::TokenizeConfig& cfg, const comm::CommConfig& comm_cfg) {
  comm_cfg.validate();
  if (comm_cfg.backend == "nccl") {
    throw Error("comm.backend: data tokenize exchanges host memory; use auto, mpi or local, not nccl");
  }
  comm::World world = comm::init_world();
  std::unique_ptr<data::Group> group;
  if (world.size > 1) {
    group = std::make_unique<CommGroup>(world, comm::make_communicator(comm_cfg.backend, world, comm_cfg.timeouts()));
  } else {
    group = std::make_unique<data::SoloGroup>();
  }
  data::TokenizeSummary summary;
  try {
    summary = data::run_tokenize(cfg, FTUNE_VERSION, *group, std::cerr);
  } catch (const data::TokenizeStopped& e) {  // every rank stops; rank 0 says why, once
    if (group->rank() == 0) std::cerr << "ftune: error: " << e.what() << "\n" << std::flush;
    // Before any rank exits: mpirun ends the job at the first non-zero exit, and rank 0 must
    // have had its say by then.
    group->barrier();
    return 1;
  }
  if (group->rank() == 0) std::cout << data::format_summary(summary, cfg);
  return 0;
}

}  // namespace

void register_data_tokenize_command(CLI::App* data, cli::CommandSet& commands) {
  // Owned by the run closure, which lives as long as the flags CLI11 binds to them.
  auto cfg = std::make_shared<data::TokenizeConfig>();
  auto comm_cfg = std::make_shared<comm::CommConfig>();
  cli::Command& cmd = commands.add(data, "tokenize", "tokenize JSONL or text corpora into token shards "
                                                     "(one process, or every rank under mpirun/srun)");
  cli::add_section(cmd.app, cmd.sections, "tokenize", *cfg, cli::ShortFlags::yes);
  cli::add_section(cmd.app, cmd.sections, "comm", *comm_cfg);
  cmd.run = [cfg, comm_cfg] {
    // An exception on one rank only (say, a file system missing on one node) ends the whole
    // job, naming that rank and host, instead of leaving the others waiting.
    if (!comm::mpi_launcher_env().empty()) return comm::run_or_abort([&] { return run_job(*cfg, *comm_cfg); });
    return run_job(*cfg, *comm_cfg);
  };
}

}  // namespace ftune
