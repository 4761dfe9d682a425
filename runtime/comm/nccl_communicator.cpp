#include "runtime/comm/nccl_communicator.h"

#include "common/error.h"
#include "runtime/comm/backend_util.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/comm/nccl_api.h"
#include "runtime/comm/world.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace ftune::comm {
namespace {

[[noreturn]] void cuda_failed(const char* call, cudaError_t e) {
  throw Error(std::string("[comm] ") + call + " failed: " + nccl_api().cuda_error_string(e) +
              " (" + process_identity() + ")");
}

#define FTUNE_CUDA_CHECK(call)                                 \
  do {                                                         \
    cudaError_t ftune_cuda_rc_ = (call);                       \
    if (ftune_cuda_rc_ != cudaSuccess) cuda_failed(#call, ftune_cuda_rc_); \
  } while (0)

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

// Owns a cudaEvent_t; shared by a Work and the watchdog, destroyed by whichever lets go last
// (destroying an event whose work is still queued is allowed: CUDA frees it on completion).
class Event {
 public:
  Event() { FTUNE_CUDA_CHECK(nccl_api().event_create_with_flags(&e_, cudaEventDisableTiming)); }
  ~Event() { nccl_api().event_destroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

struct Pending {
  std::shared_ptr<Event> done;
  CollectiveInfo info;
};

class NcclCommunicator;

// Watches the collectives of one communicator from its own thread, so that a hang is caught
// even while the caller's thread is blocked in CUDA or busy elsewhere.
class Watchdog {
 public:
  explicit Watchdog(NcclCommunicator* owner, int device);
  ~Watchdog() { stop(); }
  void track(Pending p);
  void stop();

 private:
  void loop();
  void check_once();

  NcclCommunicator* owner_;
  int device_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  std::thread thread_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<MpiCommunicator> host, int device, void* compute);
  ~NcclCommunicator() override;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const char* backend() const override { return "nccl"; }
  Device device() const override { return Device::cuda; }

  std::unique_ptr<Work> all_reduce_async(const void* send, void* recv, size_t count,
                                         DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                         DType dtype) override;
  std::unique_ptr<Work> broadcast_async(void* buf, size_t count, DType dtype,
                                        int root) override;
  void barrier() override { host_->barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override;
  void set_phase(Phase phase) override { host_->set_phase(phase); }
  void set_compute_stream(void* cuda_stream) override {
    compute_ = static_cast<cudaStream_t>(cuda_stream);
  }
  [[noreturn]] void abort(const std::string& why) override;

  cudaStream_t compute_stream() const { return compute_; }
  // From the watchdog thread.
  void finished(const CollectiveInfo& info) { host_->finished(info); }
  [[noreturn]] void timed_out(const CollectiveInfo& info);
  [[noreturn]] void async_failed(ncclResult_t rc);
  void poll_async_error();

 private:
  template <typename Call>
  std::unique_ptr<Work> issue(const CollectiveInfo& info, Call call);
  void settle(ncclResult_t rc, const CollectiveInfo& info);
  [[noreturn]] void nccl_failed(ncclResult_t rc, const CollectiveInfo& info);

  const NcclApi& api_;
  std::unique_ptr<MpiCommunicator> host_;  // never null
  int device_;
  cudaStream_t compute_ = nullptr;  // the caller's; null = the legacy default stream
  cudaStream_t stream_ = nullptr;   // ours, for NCCL
  std::unique_ptr<Event> ready_;    // compute's point that the next collective waits for
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<Watchdog> watchdog_;
};

// wait() orders the caller's compute stream after the collective (no host block): kernels
// queued on it from then on see the result. done() asks the event without blocking.
class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator* comm, std::shared_ptr<Event> done) : comm_(comm), done_(std::move(done)) {}
  void wait() override {
    FTUNE_CUDA_CHECK(nccl_api().stream_wait_event(comm_->compute_stream(), done_->get(), 0));
  }
  bool done() override {
    cudaError_t q = nccl_api().event_query(done_->get());
    if (q == cudaErrorNotReady) return false;
    FTUNE_CUDA_CHECK(q);
    return true;
  }

 private:
  NcclCommunicator* comm_;  // must outlive the Work
  std::shared_ptr<Event> done_;
};

// ---- watchdog ----------------------------------------------------------------------------------

Watchdog::Watchdog(NcclCommunicator* owner, int device)
    : owner_(owner), device_(device), thread_([this] { loop(); }) {}

void Watchdog::track(Pending p) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(std::move(p));
}

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::loop() {
  nccl_api().set_device(device_);  // the current device is per thread
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(20));
    if (stop_) break;
    lock.unlock();
    try {
      check_once();
    } catch (const std::exception& e) {
      owner_->abort(e.what());
    }
    lock.lock();
  }
}

void Watchdog::check_once() {
  std::deque<Pending> still;
  {
    std::lock_guard<std::mutex> lock(mu_);
    still.swap(pending_);
  }
  int64_t now = monotonic_ns();
  std::deque<Pending> keep;
  for (Pending& p : still) {
    cudaError_t q = nccl_api().event_query(p.done->get());
    if (q == cudaSuccess) {
      owner_->finished(p.info);
    } else if (q != cudaErrorNotReady) {
      FTUNE_CUDA_CHECK(q);
    } else if ((now - p.info.start_ns) * 1e-9 > p.info.timeout_s) {
      owner_->timed_out(p.info);
    } else {
      keep.push_back(std::move(p));
    }
  }
  owner_->poll_async_error();
  std::lock_guard<std::mutex> lock(mu_);
  // Collectives issued meanwhile went into pending_; keep the older ones first.
  for (auto it = keep.rbegin(); it != keep.rend(); ++it) pending_.push_front(std::move(*it));
}

// ---- communicator ------------------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> host, int device, void* compute)
    : api_(nccl_api()), host_(std::move(host)), device_(device),
      compute_(static_cast<cudaStream_t>(compute)) {
  FTUNE_CUDA_CHECK(api_.set_device(device_));
  FTUNE_CUDA_CHECK(api_.stream_create_with_flags(&stream_, cudaStreamNonBlocking));
  ready_ = std::make_unique<Event>();
  ncclUniqueId id{};
  CollectiveInfo info = host_->begin("nccl_init", DType::u8, 0, -1);
  if (host_->rank() == 0) {
    ncclResult_t rc = api_.get_unique_id(&id);
    if (rc != ncclSuccess) nccl_failed(rc, info);
  }
  host_->broadcast(&id, sizeof id, DType::u8, 0);
  // Non-blocking, so that a peer that never joins costs a timeout, not a hang.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  settle(api_.comm_init_rank_config(&comm_, host_->size(), id, host_->rank(), &config), info);
  host_->finished(info);
  watchdog_ = std::make_unique<Watchdog>(this, device_);
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    // Finalize flushes queued work and synchronises with the peers: skipped while unwinding
    // from an error, when the peers are not finalizing (abort is local).
    bool clean = false;
    if (std::uncaught_exceptions() == 0) {
      ncclResult_t st = api_.comm_finalize(comm_);
      int64_t deadline = monotonic_ns() + 10'000'000'000;  // [ns]
      while (st == ncclInProgress && monotonic_ns() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        api_.comm_get_async_error(comm_, &st);
      }
      clean = st == ncclSuccess;
    }
    if (watchdog_) watchdog_->stop();
    if (clean) {
      api_.comm_destroy(comm_);
    } else {
      api_.comm_abort(comm_);
    }
  }
  ready_.reset();
  if (stream_ != nullptr) api_.stream_destroy(stream_);
}

void NcclCommunicator::nccl_failed(ncclResult_t rc, const CollectiveInfo& info) {
  const char* last = comm_ != nullptr ? api_.get_last_error(comm_) : "";
  throw Error("[comm] " + info.describe(host_->label()) + " (nccl) failed on " + process_identity() +
              ": " + api_.get_error_string(rc) + (last && *last ? std::string(": ") + last : ""));
}

// A non-blocking communicator may answer ncclInProgress; nothing else may be called on it
// until its state leaves that, so wait here (bounded by the phase timeout).
void NcclCommunicator::settle(ncclResult_t rc, const CollectiveInfo& info) {
  if (rc == ncclSuccess) return;
  if (rc != ncclInProgress) nccl_failed(rc, info);
  for (;;) {
    ncclResult_t st = ncclInProgress;
    api_.comm_get_async_error(comm_, &st);
    if (st == ncclSuccess) return;
    if (st != ncclInProgress) nccl_failed(st, info);
    host_->alive();
    if ((monotonic_ns() - info.start_ns) * 1e-9 > info.timeout_s) timed_out(info);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

template <typename Call>
std::unique_ptr<Work> NcclCommunicator::issue(const CollectiveInfo& info, Call call) {
  if (info.count == 0) {
    host_->finished(info);
    return completed_work();
  }
  // NCCL runs on our stream so that compute queued after this call overlaps with it; the
  // stream first waits for what compute queued so far (the input may still be being written),
  // and wait() makes compute wait for `done` before anything reads the result or reuses the
  // input. Buffers must stay alive until compute has passed that point.
  FTUNE_CUDA_CHECK(api_.event_record(ready_->get(), compute_));
  FTUNE_CUDA_CHECK(api_.stream_wait_event(stream_, ready_->get(), 0));
  settle(call(stream_), info);
  auto done = std::make_shared<Event>();
  FTUNE_CUDA_CHECK(api_.event_record(done->get(), stream_));
  watchdog_->track({done, info});
  return std::make_unique<NcclWork>(this, std::move(done));
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(const void* send, void* recv, size_t count,
                                                         DType dtype, ReduceOp op) {
  check_reduce_args(dtype, op, "all_reduce");
  auto info = host_->begin("all_reduce", dtype, count, static_cast<int>(op));
  return issue(info, [&](cudaStream_t s) {
    return api_.all_reduce(send, recv, count, nccl_type(dtype), nccl_op(op), comm_, s);
  });
}

std::unique_ptr<Work> NcclCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                             size_t recv_count, DType dtype,
                                                             ReduceOp op) {
  check_reduce_args(dtype, op, "reduce_scatter");
  auto info = host_->begin("reduce_scatter", dtype, recv_count, static_cast<int>(op));
  return issue(info, [&](cudaStream_t s) {
    return api_.reduce_scatter(send, recv, recv_count, nccl_type(dtype), nccl_op(op), comm_, s);
  });
}

std::unique_ptr<Work> NcclCommunicator::all_gather_async(const void* send, void* recv,
                                                         size_t send_count, DType dtype) {
  auto info = host_->begin("all_gather", dtype, send_count, -1);
  return issue(info, [&](cudaStream_t s) {
    return api_.all_gather(send, recv, send_count, nccl_type(dtype), comm_, s);
  });
}

std::unique_ptr<Work> NcclCommunicator::broadcast_async(void* buf, size_t count, DType dtype,
                                                        int root) {
  check_root(root, size(), "broadcast");
  auto info = host_->begin("broadcast", dtype, count, -1);
  return issue(info, [&](cudaStream_t s) {
    return api_.broadcast(buf, buf, count, nccl_type(dtype), root, comm_, s);
  });
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  // A fresh NCCL communicator over the MPI split (its id broadcast over the sub-communicator)
  // rather than ncclCommSplit: the host side needs the MPI split anyway.
  std::unique_ptr<Communicator> sub = host_->split(color, key);
  if (!sub) return nullptr;
  std::unique_ptr<MpiCommunicator> mpi(static_cast<MpiCommunicator*>(sub.release()));
  return std::make_unique<NcclCommunicator>(std::move(mpi), device_, compute_);
}

void NcclCommunicator::poll_async_error() {
  ncclResult_t st = ncclSuccess;
  if (api_.comm_get_async_error(comm_, &st) != ncclSuccess) return;
  if (st != ncclSuccess && st != ncclInProgress) async_failed(st);
}

// The line first, then ncclCommAbort (it frees the GPU from kernels waiting on a peer; the
// caller's thread may then fail on the aborted communicator, and its message must not come
// first), then MPI_Abort.
void NcclCommunicator::timed_out(const CollectiveInfo& info) {
  host_->timed_out(info, [this] { api_.comm_abort(comm_); });
}

void NcclCommunicator::async_failed(ncclResult_t rc) {
  std::string last = api_.get_last_error(comm_);
  std::fprintf(stderr, "[comm] NCCL error on %s: %s%s; aborting the job\n", process_identity().c_str(),
               api_.get_error_string(rc), last.empty() ? "" : (": " + last).c_str());
  std::fflush(stderr);
  api_.comm_abort(comm_);
  abort_job("", 1);
}

void NcclCommunicator::abort(const std::string& why) {
  std::fprintf(stderr, "[comm] %s: %s\n", process_identity().c_str(), why.c_str());
  std::fflush(stderr);
  if (comm_ != nullptr) api_.comm_abort(comm_);
  abort_job("", 1);
}

}  // namespace

std::string nccl_library_description() {
  const NcclApi& api = nccl_api();
  int v = api.nccl_version;  // 22809 = 2.28.9
  return "nccl " + std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." +
         std::to_string(v % 100) + " from " + api.nccl_path;
}

std::unique_ptr<Communicator> make_nccl_communicator(const World& world, const Timeouts& timeouts) {
  if (!mpi_active()) {
    throw Error("[comm] backend nccl needs MPI for its id and its watchdog, also for one rank (" +
                process_identity() + "): start under mpirun/srun (-np 1 is fine) or set "
                "FTUNE_COMM_MPI=1");
  }
  const NcclApi& api = nccl_api();
  int devices = 0;
  cudaError_t rc = api.get_device_count(&devices);
  if (rc != cudaSuccess || devices == 0) {
    throw Error("[comm] backend nccl needs a CUDA device, but " + process_identity() + " has none (" +
                (rc != cudaSuccess ? api.cuda_error_string(rc) : "0 devices") +
                "): use backend mpi for host buffers");
  }
  int device = world.local_rank % devices;
  auto c = std::make_unique<NcclCommunicator>(MpiCommunicator::create(timeouts), device, nullptr);
  if (world.rank == 0) std::fprintf(stderr, "[comm] %s\n", nccl_library_description().c_str());
  return c;
}

}  // namespace ftune::comm
