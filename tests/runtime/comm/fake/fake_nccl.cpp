// A stand-in libnccl.so.2 for testing the nccl backend's control flow without a GPU: every
// collective acts as on one rank (a copy), whatever the communicator's size. Each call is
// logged on stderr ("fake-nccl: ncclCommAbort"). FAKE_NCCL_MODE=async-error makes
// ncclCommGetAsyncError report ncclRemoteError once a collective was issued.
#include <nccl.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

struct ncclComm {
  int rank, size;
  std::atomic<bool> issued{false};
  std::atomic<bool> init_pending{true};  // init answers ncclInProgress once, like a real one
};

namespace {
bool mode(const char* m) {
  const char* v = std::getenv("FAKE_NCCL_MODE");
  return v != nullptr && std::strcmp(v, m) == 0;
}
size_t bytes_of(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
  }
}
void log(const char* what) { std::fprintf(stderr, "fake-nccl: %s\n", what); }
ncclResult_t copy(const void* src, void* dst, size_t count, ncclDataType_t t, ncclComm_t comm) {
  if (src != dst && count > 0) std::memmove(dst, src, count * bytes_of(t));
  comm->issued = true;
  return ncclSuccess;
}
}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* v) {
  *v = NCCL_VERSION_CODE;
  return ncclSuccess;
}
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  std::strcpy(id->internal, "fake-nccl-id");
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config) {
  if (std::strcmp(id.internal, "fake-nccl-id") != 0) return ncclInvalidArgument;  // not broadcast
  *comm = new ncclComm{rank, nranks};
  log("ncclCommInitRankConfig");
  return config != nullptr && config->blocking == 0 ? ncclInProgress : ncclSuccess;
}
ncclResult_t ncclCommFinalize(ncclComm_t) {
  log("ncclCommFinalize");
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  log("ncclCommDestroy");
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t) {
  log("ncclCommAbort");  // the comm is leaked: the process is about to end
  return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* err) {
  if (comm->init_pending.exchange(false)) {
    *err = ncclInProgress;
    return ncclSuccess;
  }
  *err = mode("async-error") && comm->issued ? ncclRemoteError : ncclSuccess;
  return ncclSuccess;
}
const char* ncclGetErrorString(ncclResult_t r) {
  return r == ncclRemoteError ? "remote process exited or there was a network error" : "fake nccl result";
}
const char* ncclGetLastError(ncclComm_t) { return mode("async-error") ? "fake peer vanished" : ""; }
ncclResult_t ncclAllReduce(const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t, ncclComm_t c,
                           cudaStream_t) {
  return copy(s, r, n, t, c);
}
ncclResult_t ncclReduceScatter(const void* s, void* r, size_t n, ncclDataType_t t, ncclRedOp_t, ncclComm_t c,
                               cudaStream_t) {
  return copy(s, r, n, t, c);
}
ncclResult_t ncclAllGather(const void* s, void* r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t) {
  return copy(s, r, n, t, c);
}
ncclResult_t ncclBroadcast(const void* s, void* r, size_t n, ncclDataType_t t, int, ncclComm_t c,
                           cudaStream_t) {
  return copy(s, r, n, t, c);
}

}  // extern "C"
