// The boundary between the torch-free `ftune` executable and libftune_torch.so, the part of the
// runtime that links LibTorch. Loading LibTorch costs ~1 s and ~500 MB RSS, so the launcher
// dlopen()s the library only for the commands that need tensors (launcher/torch_loader.h); all
// other commands, `--help` and `--dump-config` never load it.
//
// The boundary is one unmangled function returning a table of function pointers that take the
// torch-free config structs of runtime/tasks.h. Both sides are built by this project with the
// same compiler and libstdc++, so C++ types (std::string, ftune::Error thrown through a call)
// may cross it; the version and size fields catch a stale library from another build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/tasks.h"
#include "runtime/train/train_config.h"

namespace ftune::model {

// Bump when a field of TorchApi or of the structs it takes changes.
constexpr uint32_t kTorchApiVersion = 6;

struct TorchApi {
  uint32_t version;   // kTorchApiVersion of the library's build
  size_t table_size;  // sizeof(TorchApi) of the library's build
  // runtime/tasks.h; both throw ftune::Error on bad input.
  std::string (*init_model_dir)(const ModelInitConfig& cfg, const std::string& out_dir);
  GenerateResult (*run_generate)(const GenerateConfig& cfg);
  // runtime/train/trainer.h: one rank of `ftune train`; returns the exit code.
  int (*run_train)(const train::TrainConfig& cfg);
  std::string (*merge_adapter)(const MergeConfig& cfg);
};

}  // namespace ftune::model

// The library's one exported symbol (looked up with dlsym); never returns null.
#define FTUNE_TORCH_API_SYMBOL "ftune_torch_api"
extern "C" const ftune::model::TorchApi* ftune_torch_api();
