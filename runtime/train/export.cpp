#include "runtime/train/export.h"

#include <filesystem>

#include "runtime/checkpoint/hf_checkpoint.h"

namespace ftune::train {
namespace {

namespace fs = std::filesystem;

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

void export_adapter(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  if (!rank.root()) return;  // adapters are replicated: rank 0's are everyone's
  peft::write_adapter(*run.model, adapter_spec(cfg), dir, fs::absolute(cfg.model.path).string());
}

}  // namespace

peft::AdapterSpec adapter_spec(const TrainConfig& cfg) {
  peft::AdapterSpec s;
  s.method = cfg.method.name;
  s.lora = {cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.use_rslora, cfg.lora.target_modules};
  s.lora.use_dora = cfg.method.name == "dora";
  s.bias = cfg.lora.bias;
  s.ia3 = {cfg.ia3.target_modules, cfg.ia3.feedforward_modules};
  s.nf4.block = cfg.qlora.block;
  s.nf4.double_quant = cfg.qlora.double_quant;
  s.prefix.num_virtual_tokens = cfg.prefix.num_virtual_tokens;
  for (const auto& [name, r] : parse_pattern(cfg.lora.rank_pattern, "lora.rank_pattern"))
    s.lora.rank_pattern.emplace_back(name, int64_t(r));
  s.lora.alpha_pattern = parse_pattern(cfg.lora.alpha_pattern, "lora.alpha_pattern");
  s.init_from = cfg.method.adapter;
  // Continuing: the adapter's own options, so that the export describes what trained.
  return s.init_from.empty() ? s : peft::continued_spec(s);
}

void export_model(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  if (cfg.method.name == "full") export_full(cfg, run, rank, dir);
  else export_adapter(cfg, run, rank, dir);
  rank.comm->barrier();
}

}  // namespace ftune::train
