#include "launcher/torch_loader.h"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>

#include "common/error.h"

#ifndef FTUNE_TORCH_LIB_RELPATH
#error "FTUNE_TORCH_LIB_RELPATH: the library's path relative to the ftune executable (CMake)"
#endif

namespace ftune {

namespace {

// Directory of the running executable. /proc/self/exe rather than argv[0]: it holds however the
// binary was started (PATH lookup, symlink in a bin directory, relative path).
std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw Error("cannot find the ftune executable's directory (readlink /proc/self/exe "
                          "failed); set FTUNE_TORCH_LIB to the path of libftune_torch.so");
  const std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.find_last_of('/'));
}

// dlerror() may be null (a symbol whose value is null); never build a std::string from null.
std::string last_dl_error() {
  const char* e = dlerror();
  return e != nullptr ? e : "unknown dynamic loader error";
}

std::string load_error(const std::string& path, const std::string& why) {
  const char* env = std::getenv("FTUNE_TORCH_LIB");
  const bool from_env = env != nullptr && *env != '\0';
  return "cannot load " + path + (from_env ? " (from $FTUNE_TORCH_LIB)" : "") +
         ", the part of ftune that links LibTorch (needed by `model init` and `generate`): " + why +
         "; rebuild it (target ftune_torch) or set FTUNE_TORCH_LIB to its path";
}

const model::TorchApi& load(const std::string& path) {
  // RTLD_LOCAL: LibTorch's symbols (it exports its own std::filesystem) stay out of the global
  // scope, so they cannot bind the launcher's references. RTLD_NOW: missing symbols fail here,
  // with dlerror(), not halfway through a command.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) throw Error(load_error(path, last_dl_error()));
  using Entry = const model::TorchApi* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, FTUNE_TORCH_API_SYMBOL));
  if (entry == nullptr) throw Error(load_error(path, last_dl_error()));
  const model::TorchApi* api = entry();
  if (api->version != model::kTorchApiVersion || api->table_size != sizeof(model::TorchApi)) {
    throw Error(load_error(path, "it is from another build (interface version " +
                                     std::to_string(api->version) + ", this ftune expects " +
                                     std::to_string(model::kTorchApiVersion) + ")"));
  }
  // Never dlclose()d: LibTorch registers static state and threads that must outlive main.
  return *api;
}

}  // namespace

std::string torch_library_path() {
  const char* env = std::getenv("FTUNE_TORCH_LIB");
  if (env != nullptr && *env != '\0') return env;
  return executable_dir() + "/" + FTUNE_TORCH_LIB_RELPATH;
}

const model::TorchApi& torch_api() {
  static const model::TorchApi& api = load(torch_library_path());
  return api;
}

}  // namespace ftune
