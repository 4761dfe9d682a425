#include "runtime/train/export.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/peft/lora.h"

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

void export_lora(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  if (!rank.root()) return;  // adapters are replicated: rank 0's are everyone's
  fs::create_directories(dir);
  std::vector<at::Tensor> keep;
  std::vector<st::TensorView> views;
  auto add = [&](const std::string& key, const at::Tensor& t) {
    keep.push_back(t.detach().to(at::kCPU, at::kFloat).contiguous());
    views.push_back({key, st::DType::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  };
  for (const auto& item : run.model->named_parameters())
    if (item.key().find(".lora.lora_") != std::string::npos) add(peft::peft_key(item.key()), item.value());
  for (auto& [name, linear] : run.model->named_linears())
    if (linear->bias.defined() && linear->bias.requires_grad())
      add(peft::peft_bias_key(name + ".bias", linear->adapter() != nullptr), linear->bias);
  st::write_file(dir + "/adapter_model.safetensors", views, {{"format", "pt"}});
  peft::LoraOptions lo;
  lo.target_modules = cfg.lora.target_modules;
  const std::vector<std::string> modules = lo.resolved_targets();
  nlohmann::json c = {{"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", cfg.lora.r},
                      {"lora_alpha", cfg.lora.alpha}, {"lora_dropout", cfg.lora.dropout},
                      {"target_modules", modules}, {"bias", cfg.lora.bias}, {"use_rslora", cfg.lora.use_rslora},
                      {"fan_in_fan_out", false}, {"inference_mode", true},
                      {"base_model_name_or_path", fs::absolute(cfg.model.path).string()}};
  std::ofstream(dir + "/adapter_config.json") << c.dump(2) << "\n";
}

}  // namespace

void export_model(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir) {
  if (cfg.method.name == "full") export_full(cfg, run, rank, dir);
  else export_lora(cfg, run, rank, dir);
  rank.comm->barrier();
}

}  // namespace ftune::train
