// NCCL and the CUDA runtime, resolved with dlopen at first use (internal; nccl backend only).
//
// Why not link them: a process must hold one libnccl.so.2, the one LibTorch loads (through its
// RPATH into the nvidia-nccl wheel). dlopen by SONAME with RTLD_NOLOAD returns that copy when
// LibTorch is already in the process; otherwise the library CMake found at configure time
// (the same wheel) is loaded by path, and a LibTorch loaded later binds to it by SONAME. A
// plain SONAME search comes last: it finds system copies (/usr/local/cuda/lib has one). It
// also keeps ftune_comm, and every binary that links it, free of a 200 MB load-time
// dependency for the commands that never touch a GPU.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

namespace ftune::comm {

struct NcclApi {
  decltype(&::ncclGetVersion) get_version;
  decltype(&::ncclGetUniqueId) get_unique_id;
  decltype(&::ncclCommInitRankConfig) comm_init_rank_config;
  decltype(&::ncclCommFinalize) comm_finalize;
  decltype(&::ncclCommDestroy) comm_destroy;
  decltype(&::ncclCommAbort) comm_abort;
  decltype(&::ncclCommGetAsyncError) comm_get_async_error;
  decltype(&::ncclGetErrorString) get_error_string;
  decltype(&::ncclGetLastError) get_last_error;
  decltype(&::ncclAllReduce) all_reduce;
  decltype(&::ncclReduceScatter) reduce_scatter;
  decltype(&::ncclAllGather) all_gather;
  decltype(&::ncclBroadcast) broadcast;

  decltype(&::cudaGetDeviceCount) get_device_count;
  decltype(&::cudaSetDevice) set_device;
  decltype(&::cudaGetErrorString) cuda_error_string;
  decltype(&::cudaStreamCreateWithFlags) stream_create_with_flags;
  decltype(&::cudaStreamDestroy) stream_destroy;
  decltype(&::cudaEventCreateWithFlags) event_create_with_flags;
  decltype(&::cudaEventDestroy) event_destroy;
  decltype(&::cudaEventRecord) event_record;
  decltype(&::cudaEventQuery) event_query;
  decltype(&::cudaStreamWaitEvent) stream_wait_event;

  std::string nccl_path;  // where libnccl.so.2 came from, for the log line
  int nccl_version = 0;   // ncclGetVersion, e.g. 22809
};

// The loaded table; throws ftune::Error naming the library and what to install when either
// library or one of its symbols is missing.
const NcclApi& nccl_api();

}  // namespace ftune::comm
