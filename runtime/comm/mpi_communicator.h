// Backend `mpi` (internal header; tests and the nccl backend include it): host buffers through
// nonblocking MPI collectives on a private duplicate of the communicator.
//
// - bf16 and f16 reductions go through an f32 staging buffer: the sum rounds once, at the end,
//   instead of at every step of MPI's reduction tree (a custom MPI_Op would round per step),
//   at the price of 2x the bytes on the wire; max and min are exact either way. u8 reductions
//   go through i32 (Open MPI 4.1 saturates 8-bit sums, ompi#8045).
// - avg is sum, then a division by size() (in f32 for the staged types); integer avg is refused.
// - Counts above max_chunk() (INT_MAX, MPI's int counts) go out as several calls in one Work.
// - Work::wait() polls MPI_Testall with a short backoff until the phase's timeout; then one
//   line names the collective and the ranks that did not arrive (ArrivalBoard) and the job
//   ends with MPI_Abort. Timeouts count from when the collective was issued. Only one line
//   per node is printed (the board's first claimant); a rank whose node shows no culprit
//   waits min(2 s, timeout/4) first, so that the node that can see the culprit reports it.
// - A program that calls different collectives under the same number is told so: the board
//   keeps each rank's signature (op, dtype, count) of the collective it entered.
#pragma once

#include "runtime/comm/arrival_board.h"
#include "runtime/comm/communicator.h"

#include <mpi.h>

#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ftune::comm {

// One collective in flight, as the timeout line names it.
struct CollectiveInfo {
  const char* op = "";  // "all_reduce"
  DType dtype = DType::u8;
  size_t count = 0;     // [elements] as passed to the call
  int reduce = -1;      // a ReduceOp, or -1
  uint64_t seq = 0;     // [collectives issued on this communicator, from 1]
  int64_t start_ns = 0;
  double timeout_s = 0;
  const char* phase = "";
  std::string describe(const std::string& label) const;  // "all_reduce(sum) bf16 x1024 #17 on world"
  uint64_t signature() const;  // op, reduce op, dtype and count in 64 bits, for the board
  static std::string describe_signature(uint64_t signature);  // "all_gather f32 x10"
};

class MpiCommunicator final : public Communicator {
 public:
  // A duplicate of MPI_COMM_WORLD; needs init_world() under an MPI launcher.
  static std::unique_ptr<MpiCommunicator> create(const Timeouts& timeouts);
  MpiCommunicator(MPI_Comm owned, std::string label, const Timeouts& timeouts);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  Device device() const override { return Device::cpu; }

  std::unique_ptr<Work> all_reduce_async(const void* send, void* recv, size_t count,
                                         DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter_async(const void* send, void* recv, size_t recv_count,
                                             DType dtype, ReduceOp op) override;
  std::unique_ptr<Work> all_gather_async(const void* send, void* recv, size_t send_count,
                                         DType dtype) override;
  std::unique_ptr<Work> broadcast_async(void* buf, size_t count, DType dtype,
                                        int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void set_phase(Phase phase) override { phase_ = phase; }
  [[noreturn]] void abort(const std::string& why) override;

  // [elements per MPI call] INT_MAX; tests lower it to exercise the chunked paths.
  void set_max_chunk(size_t elems) { max_chunk_ = elems > 0 ? elems : 1; }
  size_t max_chunk() const { return max_chunk_; }
  const std::string& label() const { return label_; }

  // For Work and for the nccl backend's host side.
  MPI_Comm mpi_comm() const { return comm_; }
  CollectiveInfo begin(const char* op, DType dtype, size_t count, int reduce);
  void finished(const CollectiveInfo& info) { board_->complete(info.seq); }
  void alive() { board_->alive(); }
  // Prints the timeout line, runs `before_abort` (the nccl backend aborts its NCCL
  // communicator there), then ends the job. Safe from a watchdog thread.
  [[noreturn]] void timed_out(const CollectiveInfo& info,
                              const std::function<void()>& before_abort = nullptr);
  [[noreturn]] void failed(const CollectiveInfo& info, int mpi_code);

 private:
  std::unique_ptr<Work> start(CollectiveInfo info, std::vector<MPI_Request> reqs,
                              std::function<void()> finish);
  std::string mismatches(const MissingReport& rep) const;
  template <typename Issue>
  std::vector<MPI_Request> chunked(size_t count, const CollectiveInfo& info, Issue issue);

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string label_;
  Timeouts timeouts_;
  Phase phase_ = Phase::startup;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<uint64_t> seq_{0};  // atomic: a watchdog thread reads it for the timeout line
  size_t max_chunk_ = INT_MAX;
  static constexpr size_t kHistory = 64;  // [collectives] whose signatures this rank keeps
  std::atomic<uint64_t> history_[kHistory] = {};  // signature of #seq at seq % kHistory
  std::unique_ptr<ArrivalBoard> board_;
};

// A pending MPI collective: its requests, and what to do once they complete (narrow a staging
// buffer, divide for avg). The staging buffers live in `finish`, so in the Work.
class MpiWork final : public Work {
 public:
  MpiWork(MpiCommunicator* comm, CollectiveInfo info, std::vector<MPI_Request> reqs,
          std::function<void()> finish);
  ~MpiWork() override;  // waits if still pending: MPI may still be writing the buffers
  void wait() override;
  bool done() override;

 private:
  bool test();
  void complete();

  MpiCommunicator* comm_;  // never null; must outlive the Work
  CollectiveInfo info_;
  std::vector<MPI_Request> reqs_;
  std::function<void()> finish_;
  bool finished_ = false;
};

const char* phase_name(Phase phase);
double phase_timeout(const Timeouts& t, Phase phase);  // [s]

}  // namespace ftune::comm
