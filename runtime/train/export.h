// [export] What `ftune train` leaves in OUT/final. Internal to runtime/train.
#pragma once

#include <string>

#include "runtime/peft/methods.h"
#include "runtime/train/run.h"
#include "runtime/train/train_config.h"

namespace ftune::train {

// Full fine-tuning: a Hugging Face directory, one safetensors shard per unit, gathered unit by
// unit (rank 0 writes; no rank holds the whole model). LoRA: PEFT's adapter_config.json +
// adapter_model.safetensors (with the biases lora.bias trains). Collective.
// The adapters the run's method attaches, from the [method], [lora], [ia3] and [qlora] sections.
peft::AdapterSpec adapter_spec(const TrainConfig& cfg);

void export_model(const TrainConfig& cfg, Run& run, Rank& rank, const std::string& dir);

}  // namespace ftune::train
