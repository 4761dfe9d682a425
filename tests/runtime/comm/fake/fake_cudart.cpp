// A stand-in libcudart.so.13 for testing the nccl backend's control flow on machines without
// a GPU (tests/runtime/comm/test_comm_nccl_fake.cpp): host memory is "device" memory, streams
// and events are bookkeeping. FAKE_NCCL_MODE=hang makes events recorded on any non-default
// stream never complete, as a collective waiting on a dead peer would.
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

struct CUstream_st {
  int id;
};
struct CUevent_st {
  std::atomic<bool> never_done{false};
};

namespace {
bool hang() {
  const char* m = std::getenv("FAKE_NCCL_MODE");
  return m != nullptr && std::strcmp(m, "hang") == 0;
}
}  // namespace

extern "C" {

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "fake cuda error"; }
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  static std::atomic<int> next{1};
  *s = new CUstream_st{next++};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  e->never_done = hang() && s != nullptr;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e->never_done ? cudaErrorNotReady : cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned int) {
  return e != nullptr ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

}  // extern "C"
