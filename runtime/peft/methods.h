// The one place that knows every fine-tuning method of a frozen base: which adapters a method
// attaches, how they are written in PEFT's layout, how a PEFT adapter directory is loaded by
// its peft_type, and which methods merge. Trainer, export, generate and merge call only this.
#pragma once

#include <string>

#include "runtime/model/llama.h"
#include "runtime/peft/ia3.h"
#include "runtime/peft/lora.h"
#include "runtime/peft/nf4.h"
#include "runtime/peft/prefix.h"

namespace ftune::peft {

struct AdapterSpec {
  std::string method = "lora";  // lora | dora | qlora | ia3 | prefix (as method.name)
  LoraOptions lora;             // lora, dora, qlora (use_dora set for dora)
  std::string bias = "none";    // PEFT's bias option (LoRA family)
  Ia3Options ia3;
  Nf4Options nf4;               // qlora's base
  PrefixOptions prefix;
  // A PEFT adapter directory to start from (continue training); empty: fresh adapters.
  std::string init_from;
  std::string peft_type() const {
    return method == "ia3" ? "IA3" : method == "prefix" ? "PREFIX_TUNING" : "LORA";
  }
  // Module names and options, before anything heavy loads; throws ftune::Error naming the key.
  void check() const;
};

// spec with the adapter options (rank, alpha, patterns, targets, DoRA, IA3 modules) of the PEFT
// directory spec.init_from; throws ftune::Error when its peft_type does not fit spec.method.
AdapterSpec continued_spec(const AdapterSpec& spec);

// Freezes the model and attaches the method's adapters (from spec.init_from's weights if set) (qlora first quantises every targeted
// projection's base to NF4 and frees its weight). Returns the number of biases set to train.
size_t attach_adapters(model::CausalLM& model, const AdapterSpec& spec, uint64_t seed);

// adapter_config.json + adapter_model.safetensors as PEFT writes them for spec (float32 tensors).
void write_adapter(model::CausalLM& model, const AdapterSpec& spec, const std::string& dir,
                   const std::string& base_model_path);

// The method and options of the PEFT adapter directory dir (LORA, with DoRA, or IA3).
AdapterSpec read_adapter_spec(const std::string& dir);

// Attaches and loads the adapter PEFT (or ftune) wrote in dir, whatever its peft_type (LORA with
// or without DoRA, IA3, PREFIX_TUNING); returns what it found. Throws ftune::Error naming the file and key.
AdapterSpec load_adapter(model::CausalLM& model, const std::string& dir);

// Folds the attached adapters into the base weights; returns the modules merged. Throws
// ftune::Error with the reason for a method that cannot merge (prefix tuning, a quantised base).
size_t merge_adapters(model::CausalLM& model);

}  // namespace ftune::peft
