#include "runtime/shard_model.h"

#include "common/error.h"
#include "runtime/checkpoint/hf_checkpoint.h"

namespace ftune::model {

std::unique_ptr<sharding::ShardedUnits> shard_model(CausalLM& model, comm::Communicator& shard,
                                                    comm::Communicator* replicas,
                                                    const sharding::EngineOptions& options,
                                                    bool take_weights) {
  std::vector<sharding::UnitParams> units;
  for (auto& u : model.parameter_units()) units.push_back({u.name, u.params});
  auto engine = std::make_unique<sharding::ShardedUnits>(std::move(units), shard, replicas, options);
  engine->install(take_weights);
  sharding::ShardedUnits* e = engine.get();
  model.set_unit_runner([e](const UnitCall& call, const at::Tensor& input) {
    return e->run(call.uses, call.run, input);
  });
  return engine;
}

LoadStats load_shards(sharding::ShardedUnits& engine, const std::string& dir) {
  st::Checkpoint ckpt = st::Checkpoint::open(dir);
  std::vector<std::string> names;
  for (size_t u = 0; u < engine.num_units(); ++u)
    if (engine.shard(u).defined())
      for (const auto& e : engine.layout(u).entries()) names.push_back(e.name);
  ckpt.require(names);
  LoadStats stats;
  std::vector<uint8_t> buf;
  at::NoGradGuard no_grad;
  for (size_t u = 0; u < engine.num_units(); ++u) {
    at::Tensor slice = engine.shard(u);
    if (!slice.defined()) continue;
    const auto& layout = engine.layout(u);
    for (const auto& piece : layout.pieces(engine.shard_comm().rank())) {
      const auto& entry = layout.entries()[piece.entry];
      const st::TensorInfo& info = ckpt.info(entry.name);
      if (info.shape != entry.shape)
        throw Error(dir + ": tensor " + entry.name + " has shape " + c10::str(at::IntArrayRef(info.shape)) +
                    " but config.json implies " + c10::str(at::IntArrayRef(entry.shape)));
      const size_t es = st::dtype_size(info.dtype);
      buf.resize(size_t(piece.count) * es);
      ckpt.file_of(entry.name).read_range(info, uint64_t(piece.entry_offset) * es, buf.size(),
                                          buf.data());
      stats.bytes_read += buf.size();
      at::Tensor src = at::from_blob(buf.data(), {piece.count},
                                     at::TensorOptions(to_scalar_type(info.dtype)));
      slice.detach().narrow(0, piece.shard_offset, piece.count).copy_(src);
    }
  }
  return stats;
}

}  // namespace ftune::model
