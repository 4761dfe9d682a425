#include "runtime/comm/nccl_api.h"

#include "common/error.h"

#include <dlfcn.h>
#include <link.h>

#include <mutex>

namespace ftune::comm {
namespace {

// The copy already in the process (LibTorch's), else the configured file (the one LibTorch's
// RPATH would pick, so a LibTorch loaded later shares it through the SONAME), and only then
// the loader's search: a system libnccl.so.2 found first would become LibTorch's too.
void* open_library(const char* soname, const char* configured) {
  void* h = dlopen(soname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (h == nullptr && configured[0] != '\0') h = dlopen(configured, RTLD_NOW | RTLD_GLOBAL);
  if (h == nullptr) h = dlopen(soname, RTLD_NOW | RTLD_GLOBAL);
  if (h == nullptr) {
    throw Error(std::string("[comm] backend nccl: cannot load ") + soname + " (" + dlerror() +
                "; also tried '" + configured + "' on " + process_identity() +
                "): install the nvidia-nccl / CUDA 13 runtime, or use backend mpi");
  }
  return h;
}

template <typename F>
void bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (fn == nullptr) {
    throw Error(std::string("[comm] backend nccl: symbol ") + name + " missing (" + dlerror() +
                "): the NCCL / CUDA runtime found is too old for this build");
  }
}

std::string path_of(void* lib) {
  link_map* map = nullptr;
  if (dlinfo(lib, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) return "?";
  return map->l_name;
}

NcclApi load() {
  NcclApi a;
  void* nccl = open_library("libnccl.so.2", FTUNE_NCCL_LIBRARY);
  void* cuda = open_library("libcudart.so.13", FTUNE_CUDART_LIBRARY);
  bind(nccl, "ncclGetVersion", a.get_version);
  bind(nccl, "ncclGetUniqueId", a.get_unique_id);
  bind(nccl, "ncclCommInitRankConfig", a.comm_init_rank_config);
  bind(nccl, "ncclCommFinalize", a.comm_finalize);
  bind(nccl, "ncclCommDestroy", a.comm_destroy);
  bind(nccl, "ncclCommAbort", a.comm_abort);
  bind(nccl, "ncclCommGetAsyncError", a.comm_get_async_error);
  bind(nccl, "ncclGetErrorString", a.get_error_string);
  bind(nccl, "ncclGetLastError", a.get_last_error);
  bind(nccl, "ncclAllReduce", a.all_reduce);
  bind(nccl, "ncclReduceScatter", a.reduce_scatter);
  bind(nccl, "ncclAllGather", a.all_gather);
  bind(nccl, "ncclBroadcast", a.broadcast);
  bind(cuda, "cudaGetDeviceCount", a.get_device_count);
  bind(cuda, "cudaSetDevice", a.set_device);
  bind(cuda, "cudaGetErrorString", a.cuda_error_string);
  bind(cuda, "cudaStreamCreateWithFlags", a.stream_create_with_flags);
  bind(cuda, "cudaStreamDestroy", a.stream_destroy);
  bind(cuda, "cudaEventCreateWithFlags", a.event_create_with_flags);
  bind(cuda, "cudaEventDestroy", a.event_destroy);
  bind(cuda, "cudaEventRecord", a.event_record);
  bind(cuda, "cudaEventQuery", a.event_query);
  bind(cuda, "cudaStreamWaitEvent", a.stream_wait_event);
  a.nccl_path = path_of(nccl);
  a.get_version(&a.nccl_version);
  return a;
}

}  // namespace

const NcclApi& nccl_api() {
  // Loaded once; a failure is remembered and rethrown, never retried half-way.
  static std::once_flag once;
  static NcclApi api;
  static std::string failure;
  std::call_once(once, [] {
    try {
      api = load();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw Error(failure);
  return api;
}

}  // namespace ftune::comm
