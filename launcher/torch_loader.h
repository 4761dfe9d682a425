// Loads libftune_torch.so on first use, so that only the commands that need tensors pay for
// LibTorch (see runtime/torch_api.h).
#pragma once

#include <string>

#include "runtime/torch_api.h"

namespace ftune {

// The library's path: $FTUNE_TORCH_LIB when set, else FTUNE_TORCH_LIB_RELPATH (fixed at configure
// time from the build's output directories) next to the running executable.
std::string torch_library_path();

// dlopen()s the library once per process and checks its table; throws ftune::Error naming the
// path and dlerror() when it is missing, unloadable, or from another build.
const model::TorchApi& torch_api();

}  // namespace ftune
