// The one communicator interface of ftune: collectives over raw device or host buffers, with
// our own dtype and reduce-op enums. No MPI or NCCL type appears here; backends (`local`,
// `mpi`, `nccl`) live in their own files and only make_communicator() chooses between them.
//
// Knows bytes, dtypes and streams, not tensors: runtime/comm/tensor_ops.h wraps LibTorch
// tensors on top. This library links no LibTorch, so the sharding engine, the data tool and
// the launcher can all use it.
//
// Every collective exists in a blocking form and an asynchronous one that returns a Work
// handle. A collective that does not complete within the current timeout ends the whole job
// (communicator abort / MPI_Abort) with one line naming the collective and the ranks that did
// not arrive: a peer is never left waiting.
//
// Threads: one communicator is driven by one thread at a time (calls must not overlap). Every
// rank must issue the same collectives in the same order: the order numbers them (#1, #2, ...)
// and the timeout line compares those numbers across ranks. Use split() for a second stream
// of collectives, e.g. for a prefetch thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ftune::comm {

enum class DType { f32, bf16, f16, i32, i64, u8 };
enum class ReduceOp { sum, avg, max, min };

size_t dtype_size(DType dtype);          // [bytes per element]
const char* dtype_name(DType dtype);     // "f32"
const char* reduce_op_name(ReduceOp op); // "sum"
bool is_integer(DType dtype);             // i32, i64, u8: no avg (every backend refuses it)

// Where the buffers of a call live. CUDA buffers need the nccl backend; `mpi` and `local`
// take host memory.
enum class Device { cpu, cuda };

// A pending collective. wait() blocks until the result is in the receive buffer (for nccl:
// until the compute stream is ordered after it) and throws or aborts on failure.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool done() = 0;  // non-blocking test
};

// Which phase a rank is in; each has its own timeout (start-up is slow on big clusters,
// checkpoint saves wait on file systems).
enum class Phase { startup, step, save };

struct Timeouts {
  double startup_s = 600;  // [s] communicator creation and the first collectives
  double step_s = 300;     // [s] any collective during training
  double save_s = 1800;    // [s] collectives around checkpoint writes
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "local", "mpi", "nccl"
  virtual Device device() const = 0;

  // Counts are elements. `send == recv` is allowed (in place) for all_reduce; for
  // reduce_scatter `send` holds size() * recv_count elements, rank r receives block r; for
  // all_gather `recv` holds size() * send_count elements, block r from rank r.
  virtual std::unique_ptr<Work> all_reduce_async(const void* send, void* recv, size_t count,
                                                 DType dtype, ReduceOp op) = 0;
  virtual std::unique_ptr<Work> reduce_scatter_async(const void* send, void* recv,
                                                     size_t recv_count, DType dtype,
                                                     ReduceOp op) = 0;
  virtual std::unique_ptr<Work> all_gather_async(const void* send, void* recv,
                                                 size_t send_count, DType dtype) = 0;
  virtual std::unique_ptr<Work> broadcast_async(void* buf, size_t count, DType dtype,
                                                int root) = 0;
  virtual void barrier() = 0;

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) {
    all_reduce_async(send, recv, count, dtype, op)->wait();
  }
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype,
                      ReduceOp op) {
    reduce_scatter_async(send, recv, recv_count, dtype, op)->wait();
  }
  void all_gather(const void* send, void* recv, size_t send_count, DType dtype) {
    all_gather_async(send, recv, send_count, dtype)->wait();
  }
  void broadcast(void* buf, size_t count, DType dtype, int root) {
    broadcast_async(buf, count, dtype, root)->wait();
  }

  // A sub-communicator of the ranks that pass the same color, ordered by key (MPI_Comm_split
  // semantics). Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // The timeout that applies to collectives from now on.
  virtual void set_phase(Phase phase) = 0;

  // nccl: the caller's compute stream (a cudaStream_t; null = the legacy default stream).
  // Each collective waits for the work queued on it so far, and Work::wait() makes it wait
  // for the collective. Host backends ignore it.
  virtual void set_compute_stream(void* cuda_stream) { (void)cuda_stream; }

  // Ends every rank of the job now, with this rank's message on stderr; never returns.
  [[noreturn]] virtual void abort(const std::string& why) = 0;
};

// This process's place in the job, learnt from MPI (the shared-memory split gives the local
// rank) or, without MPI, rank 0 of 1.
struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;   // [rank on this node]
  int local_size = 1;   // [ranks on this node]
  int node = 0;         // [node index, 0 .. nodes-1, in rank order]
  int nodes = 1;
  std::string host;
};

}  // namespace ftune::comm
