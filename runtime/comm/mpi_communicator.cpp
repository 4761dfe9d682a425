#include "runtime/comm/mpi_communicator.h"

#include "common/error.h"
#include "runtime/comm/backend_util.h"
#include "runtime/comm/half.h"
#include "runtime/comm/mpi_check.h"
#include "runtime/comm/world.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iterator>
#include <thread>

namespace ftune::comm {
namespace {

// Reductions of these go through a 4-byte staging buffer: bf16 and f16 as f32 (see the
// header), u8 as i32, because Open MPI 4.1's AVX reduction kernels saturate 8-bit sums instead
// of wrapping (open-mpi/ompi#8045, "wontfix"); the i32 sum narrowed to 8 bits wraps as it must.
bool staged(DType dtype) {
  return dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::u8;
}

using Stage = std::vector<uint32_t>;  // [4-byte elements] viewed as f32 or i32

void widen(DType dtype, const void* src, Stage& dst) {
  if (dtype != DType::u8) return widen_to_f32(src, reinterpret_cast<float*>(dst.data()), dst.size(), dtype);
  auto s = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < dst.size(); ++i) dst[i] = s[i];
}

void narrow(DType dtype, const Stage& src, void* dst, size_t n) {
  if (dtype != DType::u8) return narrow_from_f32(reinterpret_cast<const float*>(src.data()), dst, n, dtype);
  auto d = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(src[i] & 0xFFu);
}

// The element type on the wire. Staged types travel as f32 or i32 when reduced; copied
// (gather, broadcast) they travel as their raw bits.
MPI_Datatype wire_type(DType dtype, bool reducing) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::bf16:
    case DType::f16: return reducing ? MPI_FLOAT : MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return reducing ? MPI_INT32_T : MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

void divide(void* values, size_t n, int by) {
  auto data = static_cast<float*>(values);
  float inv = 1.0f / static_cast<float>(by);
  for (size_t i = 0; i < n; ++i) data[i] *= inv;
}

char* at(void* base, size_t elems, size_t elem_size) {
  return static_cast<char*>(base) + elems * elem_size;
}
const char* at(const void* base, size_t elems, size_t elem_size) {
  return static_cast<const char*>(base) + elems * elem_size;
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

}  // namespace

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::startup: return "startup";
    case Phase::step: return "step";
    case Phase::save: return "save";
  }
  return "?";
}

double phase_timeout(const Timeouts& t, Phase phase) {
  switch (phase) {
    case Phase::startup: return t.startup_s;
    case Phase::step: return t.step_s;
    case Phase::save: return t.save_s;
  }
  return t.step_s;
}

namespace {
const char* const kOps[] = {"?", "all_reduce", "reduce_scatter", "all_gather", "broadcast",
                            "barrier", "nccl_init"};
}  // namespace

// [8 bits op][4 bits reduce + 1][4 bits dtype][48 bits count]
uint64_t CollectiveInfo::signature() const {
  uint64_t code = 0;
  for (uint64_t i = 1; i < std::size(kOps); ++i) {
    if (std::strcmp(op, kOps[i]) == 0) code = i;
  }
  return code << 56 | static_cast<uint64_t>(reduce + 1) << 52 |
         static_cast<uint64_t>(dtype) << 48 | (count & 0xFFFFFFFFFFFFull);
}

std::string CollectiveInfo::describe_signature(uint64_t sig) {
  uint64_t code = sig >> 56;
  CollectiveInfo info;
  info.op = code < std::size(kOps) ? kOps[code] : "?";
  info.reduce = static_cast<int>((sig >> 52) & 0xF) - 1;
  info.dtype = static_cast<DType>((sig >> 48) & 0xF);
  info.count = sig & 0xFFFFFFFFFFFFull;
  std::string d = info.describe("");
  return d.substr(0, d.find(" #"));
}

std::string CollectiveInfo::describe(const std::string& label) const {
  std::string s = op;
  if (reduce >= 0) s += std::string("(") + reduce_op_name(static_cast<ReduceOp>(reduce)) + ")";
  if (count > 0 || reduce >= 0) s += std::string(" ") + dtype_name(dtype) + " x" + std::to_string(count);
  return s + " #" + std::to_string(seq) + " on " + label;
}

// ---- communicator ----------------------------------------------------------------------------

namespace {
// Creating a communicator (MPI_Comm_dup, the board's shared window) blocks without a timeout;
// a timed barrier first turns a rank that never starts into an error, not a hang. There is no
// board yet to say which rank is missing.
void wait_for_every_rank(double timeout_s) {
  MPI_Request req;
  FTUNE_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
  int64_t start = monotonic_ns();
  for (int done = 0;;) {
    FTUNE_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if ((monotonic_ns() - start) * 1e-9 > timeout_s) {
      int size = 0, rank = 0;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      // Staggered, so that the lowest waiting rank's line (and abort) usually comes alone.
      std::this_thread::sleep_for(std::chrono::milliseconds(50 * std::min(rank, 40)));
      char waited[32];
      std::snprintf(waited, sizeof waited, "%.1f", timeout_s);
      abort_job("[comm] timeout: not every one of the " + std::to_string(size) +
                    " ranks reached communicator creation within " + waited +
                    " s (startup phase timeout) on " + process_identity() +
                    "; a rank did not start or is stuck before it; aborting the job", 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}
}  // namespace

std::unique_ptr<MpiCommunicator> MpiCommunicator::create(const Timeouts& timeouts) {
  if (!mpi_active()) {
    throw Error("[comm] backend mpi needs a process started by an MPI launcher (mpirun, srun); "
                "none was detected (" + process_identity() + "): run under mpirun/srun, or use "
                "backend local or auto for one process");
  }
  wait_for_every_rank(timeouts.startup_s);
  MPI_Comm dup;
  FTUNE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  return std::make_unique<MpiCommunicator>(dup, "world", timeouts);
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned, std::string label, const Timeouts& timeouts)
    : comm_(owned), label_(std::move(label)), timeouts_(timeouts) {
  FTUNE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  FTUNE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  FTUNE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  board_ = std::make_unique<ArrivalBoard>(comm_);
}

MpiCommunicator::~MpiCommunicator() {
  board_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  // Skipped while unwinding from an error: the job is about to be aborted anyway.
  if (comm_ != MPI_COMM_NULL && !finalized && std::uncaught_exceptions() == 0) MPI_Comm_free(&comm_);
}

CollectiveInfo MpiCommunicator::begin(const char* op, DType dtype, size_t count, int reduce) {
  CollectiveInfo info;
  info.op = op;
  info.dtype = dtype;
  info.count = count;
  info.reduce = reduce;
  info.seq = ++seq_;
  info.start_ns = monotonic_ns();
  info.timeout_s = phase_timeout(timeouts_, phase_);
  info.phase = phase_name(phase_);
  history_[info.seq % kHistory].store(info.signature(), std::memory_order_relaxed);
  board_->enter(info.seq, info.signature());
  return info;
}

std::unique_ptr<Work> MpiCommunicator::start(CollectiveInfo info, std::vector<MPI_Request> reqs,
                                             std::function<void()> finish) {
  return std::make_unique<MpiWork>(this, std::move(info), std::move(reqs), std::move(finish));
}

// Calls issue(offset, n) for each piece of at most max_chunk_ elements; each returns a request.
template <typename Issue>
std::vector<MPI_Request> MpiCommunicator::chunked(size_t count, const CollectiveInfo& info,
                                                  Issue issue) {
  std::vector<MPI_Request> reqs;
  for (size_t off = 0; off < count; off += max_chunk_) {
    int n = static_cast<int>(std::min(max_chunk_, count - off));
    MPI_Request req;
    int rc = issue(off, n, &req);
    if (rc != MPI_SUCCESS) failed(info, rc);
    reqs.push_back(req);
  }
  return reqs;
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(const void* send, void* recv,
                                                        size_t count, DType dtype,
                                                        ReduceOp op) {
  check_reduce_args(dtype, op, "all_reduce");
  size_t bytes = count * dtype_size(dtype);
  if (send != recv && count > 0 && overlaps(send, bytes, recv, bytes)) {
    throw Error("[comm] all_reduce: send and recv overlap without being the same buffer (" +
                process_identity() + "): pass the same pointer for in place, or separate buffers");
  }
  CollectiveInfo info = begin("all_reduce", dtype, count, static_cast<int>(op));
  MPI_Datatype type = wire_type(dtype, true);
  MPI_Op mop = mpi_op(op);
  bool avg = op == ReduceOp::avg;
  if (staged(dtype)) {
    auto stage = std::make_shared<Stage>(count);
    widen(dtype, send, *stage);
    uint32_t* s = stage->data();
    auto reqs = chunked(count, info, [&](size_t off, int n, MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, s + off, n, type, mop, comm_, r);
    });
    int size = size_;
    return start(info, std::move(reqs), [stage, recv, count, dtype, avg, size] {
      if (avg) divide(stage->data(), count, size);
      narrow(dtype, *stage, recv, count);
    });
  }
  size_t es = dtype_size(dtype);
  const void* in = send == recv ? MPI_IN_PLACE : send;
  auto reqs = chunked(count, info, [&](size_t off, int n, MPI_Request* r) {
    const void* s = in == MPI_IN_PLACE ? MPI_IN_PLACE : at(send, off, es);
    return MPI_Iallreduce(s, at(recv, off, es), n, type, mop, comm_, r);
  });
  int size = size_;
  std::function<void()> finish;
  if (avg) finish = [recv, count, size] { divide(recv, count, size); };
  return start(info, std::move(reqs), std::move(finish));
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_async(const void* send, void* recv,
                                                            size_t recv_count, DType dtype,
                                                            ReduceOp op) {
  check_reduce_args(dtype, op, "reduce_scatter");
  size_t es = dtype_size(dtype), total = recv_count * static_cast<size_t>(size_);
  if (recv_count > 0 && overlaps(send, total * es, recv, recv_count * es)) {
    throw Error("[comm] reduce_scatter: recv overlaps send (" + process_identity() +
                "): give it a separate output buffer");
  }
  CollectiveInfo info = begin("reduce_scatter", dtype, recv_count, static_cast<int>(op));
  MPI_Datatype type = wire_type(dtype, true);
  MPI_Op mop = mpi_op(op);
  std::shared_ptr<Stage> in_stage, out_stage;
  const void* in = send;
  void* out = recv;
  size_t wes = es;  // [bytes per element on the wire]
  if (staged(dtype)) {
    in_stage = std::make_shared<Stage>(total);
    out_stage = std::make_shared<Stage>(recv_count);
    widen(dtype, send, *in_stage);
    in = in_stage->data();
    out = out_stage->data();
    wes = sizeof(uint32_t);
  }
  std::vector<MPI_Request> reqs;
  if (recv_count <= max_chunk_) {
    MPI_Request r;
    int rc = MPI_Ireduce_scatter_block(in, out, static_cast<int>(recv_count), type, mop, comm_, &r);
    if (rc != MPI_SUCCESS) failed(info, rc);
    reqs.push_back(r);
  } else {
    // Block r of every rank is reduced onto rank r, piece by piece: the pieces of a
    // reduce-scatter block are not contiguous across blocks, the ones of a reduce are.
    for (int root = 0; root < size_; ++root) {
      auto more = chunked(recv_count, info, [&](size_t off, int n, MPI_Request* r) {
        const char* src = at(in, static_cast<size_t>(root) * recv_count + off, wes);
        return MPI_Ireduce(src, root == rank_ ? at(out, off, wes) : nullptr, n, type, mop, root,
                           comm_, r);
      });
      reqs.insert(reqs.end(), more.begin(), more.end());
    }
  }
  bool avg = op == ReduceOp::avg;
  int size = size_;
  std::function<void()> finish;
  if (staged(dtype)) {
    finish = [in_stage, out_stage, recv, recv_count, dtype, avg, size] {
      if (avg) divide(out_stage->data(), recv_count, size);
      narrow(dtype, *out_stage, recv, recv_count);
    };
  } else if (avg) {
    finish = [recv, recv_count, size] { divide(recv, recv_count, size); };
  }
  return start(info, std::move(reqs), std::move(finish));
}

std::unique_ptr<Work> MpiCommunicator::all_gather_async(const void* send, void* recv,
                                                        size_t send_count, DType dtype) {
  CollectiveInfo info = begin("all_gather", dtype, send_count, -1);
  size_t es = dtype_size(dtype);
  MPI_Datatype type = wire_type(dtype, false);
  char* mine = at(recv, static_cast<size_t>(rank_) * send_count, es);
  bool in_place = send == mine;
  std::vector<MPI_Request> reqs;
  if (send_count <= max_chunk_) {
    MPI_Request r;
    int n = static_cast<int>(send_count);
    int rc = MPI_Iallgather(in_place ? MPI_IN_PLACE : send, n, type, recv, n, type, comm_, &r);
    if (rc != MPI_SUCCESS) failed(info, rc);
    reqs.push_back(r);
  } else {
    // Each rank broadcasts its own block in pieces (the pieces of all blocks are not
    // contiguous in recv, so one chunked allgather would need a strided datatype).
    if (!in_place) std::memmove(mine, send, send_count * es);
    for (int root = 0; root < size_; ++root) {
      char* block = at(recv, static_cast<size_t>(root) * send_count, es);
      auto more = chunked(send_count, info, [&](size_t off, int n, MPI_Request* r) {
        return MPI_Ibcast(at(block, off, es), n, type, root, comm_, r);
      });
      reqs.insert(reqs.end(), more.begin(), more.end());
    }
  }
  return start(info, std::move(reqs), nullptr);
}

std::unique_ptr<Work> MpiCommunicator::broadcast_async(void* buf, size_t count, DType dtype,
                                                       int root) {
  check_root(root, size_, "broadcast");
  CollectiveInfo info = begin("broadcast", dtype, count, -1);
  size_t es = dtype_size(dtype);
  MPI_Datatype type = wire_type(dtype, false);
  auto reqs = chunked(count, info, [&](size_t off, int n, MPI_Request* r) {
    return MPI_Ibcast(at(buf, off, es), n, type, root, comm_, r);
  });
  return start(info, std::move(reqs), nullptr);
}

void MpiCommunicator::barrier() {
  CollectiveInfo info = begin("barrier", DType::u8, 0, -1);
  MPI_Request r;
  int rc = MPI_Ibarrier(comm_, &r);
  if (rc != MPI_SUCCESS) failed(info, rc);
  MpiWork(this, info, {r}, nullptr).wait();
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  // A timed barrier first: MPI_Comm_split itself blocks without a timeout, so a missing rank
  // is caught (and named) here.
  barrier();
  MPI_Comm sub;
  FTUNE_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
  if (sub == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiCommunicator>(sub, label_ + "/split(" + std::to_string(color) + ")",
                                           timeouts_);
}

void MpiCommunicator::abort(const std::string& why) {
  abort_job("[comm] " + process_identity() + ": " + why, 1);
}

void MpiCommunicator::timed_out(const CollectiveInfo& info,
                                const std::function<void()>& before_abort) {
  MissingReport rep = board_->missing(info.seq);
  std::string odd = mismatches(rep);
  if (!odd.empty()) {
    rep.text = odd + "; " + rep.text;
    rep.culprit_here = true;
  }
  // A rank that sees no culprit on its node waits a little, so that the node holding the
  // culprit (whose ranks time out too) prints the line that names it.
  if (!rep.culprit_here && rep.others_remote) {
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(2.0, 0.25 * info.timeout_s)));
  }
  if (!board_->claim_report()) {
    // Another rank of this node prints the line and aborts; give it the time to do so.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    if (before_abort) before_abort();
    abort_job("", 1);
  }
  char waited[32];
  std::snprintf(waited, sizeof waited, "%.1f", (monotonic_ns() - info.start_ns) * 1e-9);
  std::string line = "[comm] timeout: " + info.describe(label_) + " did not complete within " +
                     waited + " s (" + info.phase + " phase timeout) on " + process_identity() +
                     "; " + rep.text + "; aborting the job";
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  if (before_abort) before_abort();
  abort_job("", 1);
}

// Peers whose last collective has a number this rank also used, but another signature.
std::string MpiCommunicator::mismatches(const MissingReport& rep) const {
  std::string out;
  uint64_t last = seq_.load();
  for (const auto& p : rep.peers) {
    if (p.entered == 0 || p.entered > last || p.entered + kHistory <= last) continue;
    uint64_t mine = history_[p.entered % kHistory].load(std::memory_order_relaxed);
    if (p.signature == mine) continue;
    out += (out.empty() ? "" : "; ") + std::string("mismatched collectives: rank ") +
           std::to_string(p.world_rank) + " called #" + std::to_string(p.entered) + " as " +
           CollectiveInfo::describe_signature(p.signature) + ", this rank as " +
           CollectiveInfo::describe_signature(mine);
  }
  return out;
}

void MpiCommunicator::failed(const CollectiveInfo& info, int mpi_code) {
  throw Error("[comm] " + info.describe(label_) + " failed on " + process_identity() + ": " +
              mpi_error_string(mpi_code));
}

// ---- work --------------------------------------------------------------------------------------

MpiWork::MpiWork(MpiCommunicator* comm, CollectiveInfo info, std::vector<MPI_Request> reqs,
                 std::function<void()> finish)
    : comm_(comm), info_(std::move(info)), reqs_(std::move(reqs)), finish_(std::move(finish)) {}

MpiWork::~MpiWork() {
  // While unwinding from an error the job is about to be aborted (run_or_abort): waiting here
  // for peers that may never come would only delay that.
  if (finished_ || std::uncaught_exceptions() > 0) return;
  try {
    wait();
  } catch (const std::exception& e) {
    abort_job("[comm] " + process_identity() + ": " + e.what(), 1);
  }
}

bool MpiWork::test() {
  if (reqs_.empty()) return true;
  int flag = 0;
  int rc = MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) {
    finished_ = true;  // the requests are dead; do not wait on them again from the destructor
    comm_->failed(info_, rc);
  }
  return flag != 0;
}

void MpiWork::complete() {
  finished_ = true;
  comm_->finished(info_);
  if (finish_) finish_();
  finish_ = nullptr;  // frees the staging buffers
}

bool MpiWork::done() {
  if (finished_) return true;
  if (test()) {
    complete();
    return true;
  }
  if ((monotonic_ns() - info_.start_ns) * 1e-9 > info_.timeout_s) comm_->timed_out(info_);
  return false;
}

void MpiWork::wait() {
  // Nonblocking collectives advance only inside MPI calls, so polling fast matters: spin for
  // the first 200 us (most collectives end there), then yield the core between polls until
  // 20 ms (oversubscribed ranks let their peers run), then sleep with a backoff capped at
  // 1 ms (a long wait costs no CPU, and 1 ms is nothing next to any timeout).
  int64_t start = monotonic_ns();
  int64_t deadline = info_.start_ns + static_cast<int64_t>(info_.timeout_s * 1e9);
  int64_t sleep_us = 0;
  while (!finished_) {
    if (test()) {
      complete();
      return;
    }
    int64_t now = monotonic_ns();
    if (now > deadline) comm_->timed_out(info_);
    comm_->alive();
    int64_t waited_us = (now - start) / 1000;
    if (waited_us < 200) continue;
    if (waited_us < 20000) {
      std::this_thread::yield();
      continue;
    }
    sleep_us = std::min<int64_t>(1000, sleep_us == 0 ? 50 : sleep_us * 2);
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
  }
}

}  // namespace ftune::comm
