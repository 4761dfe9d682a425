// One rank of the communicator tests (run directly for `local`, under mpirun for `mpi`):
//   comm_rank <mode> <backend> [--chunk N] [--timeout S] [--startup-timeout S] [--pid-dir D]
// modes: ops (every collective x dtype x op against comm_reference.h), split, async, placement,
// fault-kill, fault-stop, fault-throw (the last rank fails before collective #12 of a loop),
// fault-stop-inside (stops after entering #12), slow-start (the last rank starts late),
// phases (save vs step timeout), nccl-hang, nccl-async-error (fake NCCL), mpi-error, latency (ours vs raw MPI), nccl-lib (which libnccl.so.2 the nccl backend loads; --preload a library first).
// Prints "OK <mode> ..." on rank 0 when every check passed; a failed check throws, and
// run_or_abort ends the job with exit code 1 and the message.
#include "common/error.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/mpi_check.h"
#include "runtime/comm/mpi_communicator.h"
#include "runtime/comm/world.h"
#include "tests/runtime/comm/comm_reference.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ftune::test {
namespace {

using comm::Communicator;

struct Args {
  std::string mode, backend = "auto", pid_dir, preload, then_load;
  size_t chunk = 0;    // [elements] 0: the backend's default
  double timeout = 30; // [s] step phase
  double startup_timeout = 30;  // [s] generous: ranks of a loaded CI machine start seconds apart
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 3) throw Error("usage: comm_rank <mode> <backend> [--chunk N] [--timeout S] [--pid-dir D]");
  a.mode = argv[1];
  a.backend = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--chunk") a.chunk = std::stoul(v);
    else if (k == "--timeout") a.timeout = std::stod(v);
    else if (k == "--startup-timeout") a.startup_timeout = std::stod(v);
    else if (k == "--pid-dir") a.pid_dir = v;
    else if (k == "--preload") a.preload = v;
    else if (k == "--then-load") a.then_load = v;
    else throw Error("comm_rank: unknown option " + k);
  }
  return a;
}

int g_checks = 0;

void expect_same(const void* got, const void* want, size_t count, DType t, const std::string& what,
                 const Communicator& c) {
  ++g_checks;
  long i = first_difference(got, want, count, t);
  if (i < 0) return;
  size_t es = comm::dtype_size(t);
  uint64_t g = 0, w = 0;
  std::memcpy(&g, static_cast<const char*>(got) + i * es, es);
  std::memcpy(&w, static_cast<const char*>(want) + i * es, es);
  char bits[80];
  std::snprintf(bits, sizeof bits, " has bits 0x%llx, want 0x%llx", static_cast<unsigned long long>(g),
                static_cast<unsigned long long>(w));
  throw Error(what + " on " + c.backend() + " rank " + std::to_string(c.rank()) + "/" +
              std::to_string(c.size()) + ": element " + std::to_string(i) + bits);
}

std::string name(const char* op, DType t, size_t n, ReduceOp r, bool reduce = true) {
  std::string s = std::string(op) + (reduce ? std::string("(") + comm::reduce_op_name(r) + ")" : "");
  return s + " " + comm::dtype_name(t) + " x" + std::to_string(n);
}

void check_reductions(Communicator& c, DType t, size_t n, ReduceOp op, int salt) {
  int p = c.size(), me = c.rank();
  auto send = filled(t, n, me, salt);
  std::vector<uint8_t> recv(send.size()), want(send.size());
  for (size_t i = 0; i < n; ++i) store_reduced(t, op, p, i, salt, want.data());
  c.all_reduce(send.data(), recv.data(), n, t, op);
  expect_same(recv.data(), want.data(), n, t, name("all_reduce", t, n, op), c);
  c.all_reduce(send.data(), send.data(), n, t, op);  // in place
  expect_same(send.data(), want.data(), n, t, name("all_reduce in place", t, n, op), c);

  auto rs_send = filled(t, n * p, me, salt);
  std::vector<uint8_t> rs_recv(n * comm::dtype_size(t) + 1), rs_all(rs_send.size());
  for (size_t i = 0; i < n * p; ++i) store_reduced(t, op, p, i, salt, rs_all.data());
  c.reduce_scatter(rs_send.data(), rs_recv.data(), n, t, op);
  expect_same(rs_recv.data(), rs_all.data() + me * n * comm::dtype_size(t), n, t,
              name("reduce_scatter", t, n, op), c);
}

void check_copies(Communicator& c, DType t, size_t n, int salt) {
  int p = c.size(), me = c.rank();
  size_t es = comm::dtype_size(t);
  auto send = filled(t, n, me, salt);
  std::vector<uint8_t> recv(n * p * es + 1), want(n * p * es + 1);
  for (int r = 0; r < p; ++r) {
    auto block = filled(t, n, r, salt);
    std::memcpy(want.data() + r * n * es, block.data(), n * es);
  }
  c.all_gather(send.data(), recv.data(), n, t);
  expect_same(recv.data(), want.data(), n * p, t, name("all_gather", t, n, ReduceOp::sum, false), c);
  std::vector<uint8_t> inplace(n * p * es + 1, 0xAB);
  std::memcpy(inplace.data() + me * n * es, send.data(), n * es);
  c.all_gather(inplace.data() + me * n * es, inplace.data(), n, t);
  expect_same(inplace.data(), want.data(), n * p, t,
              name("all_gather in place", t, n, ReduceOp::sum, false), c);
  for (int root = 0; root < p; ++root) {
    auto buf = me == root ? filled(t, n, root, salt) : std::vector<uint8_t>(n * es + 1, 0xCD);
    c.broadcast(buf.data(), n, t, root);
    auto ref = filled(t, n, root, salt);
    expect_same(buf.data(), ref.data(), n, t,
                name("broadcast", t, n, ReduceOp::sum, false) + " root " + std::to_string(root), c);
  }
}

void run_ops(Communicator& c) {
  int salt = 0;
  for (DType t : kAllDTypes) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{37}}) {
      for (ReduceOp op : kAllOps) {
        if (comm::is_integer(t) && op == ReduceOp::avg) {
          bool refused = false;
          std::vector<uint8_t> b(64);
          try {
            c.all_reduce(b.data(), b.data(), 1, t, op);
          } catch (const Error& e) {
            refused = std::string(e.what()).find("refused") != std::string::npos;
          }
          if (!refused) throw Error(std::string("integer avg was not refused for ") + comm::dtype_name(t));
          ++g_checks;
          continue;
        }
        check_reductions(c, t, n, op, ++salt);
      }
      check_copies(c, t, n, ++salt);
    }
  }
  c.barrier();
}

void run_split(Communicator& world) {
  int me = world.rank(), p = world.size();
  // rows: ranks {0,1}, {2,3}, ...; columns: even and odd ranks (2 x 2 for 4 ranks)
  auto rows = world.split(me / 2, me);
  auto cols = world.split(me % 2, me);
  int row_size = std::min(2, p - (me / 2) * 2);
  int col_size = (p + 1 - me % 2) / 2;
  if (rows->size() != row_size || rows->rank() != me % 2) throw Error("row split: wrong size/rank");
  if (cols->size() != col_size || cols->rank() != me / 2) throw Error("column split: wrong size/rank");
  int32_t v = me, sum = 0;
  rows->all_reduce(&v, &sum, 1, DType::i32, ReduceOp::sum);
  int32_t want = (me / 2) * 2 + (row_size == 2 ? (me / 2) * 2 + 1 : 0);
  if (sum != want) throw Error("row all_reduce: got " + std::to_string(sum) + ", want " + std::to_string(want));
  cols->all_reduce(&v, &sum, 1, DType::i32, ReduceOp::sum);
  want = 0;
  for (int r = me % 2; r < p; r += 2) want += r;
  if (sum != want) throw Error("column all_reduce: got " + std::to_string(sum) + ", want " + std::to_string(want));
  g_checks += 4;
  run_ops(*rows);
  run_ops(*cols);
  // Not a member (color < 0) gives null; a negative key reverses the order.
  auto evens = world.split(me % 2 == 0 ? 0 : -1, -me);
  if ((me % 2 == 0) != (evens != nullptr)) throw Error("split with color -1 must give null");
  if (evens && evens->rank() != (p - 1) / 2 - me / 2) throw Error("split key order not honoured");
  if (evens) run_ops(*evens);
  ++g_checks;
}

void run_async(Communicator& c) {
  int p = c.size(), me = c.rank();
  const size_t n = 4096;
  auto a = filled(DType::f32, n, me, 1), b = filled(DType::bf16, n, me, 2);
  auto d = filled(DType::i64, n * p, me, 3);
  std::vector<uint8_t> a_out(a.size()), b_out(b.size() * p), d_out(n * 8 + 1);
  auto e = me == 0 ? filled(DType::u8, n, 0, 4) : std::vector<uint8_t>(n + 1);
  // Four collectives in flight at once, waited in another order than issued.
  auto w1 = c.all_reduce_async(a.data(), a_out.data(), n, DType::f32, ReduceOp::sum);
  auto w2 = c.all_gather_async(b.data(), b_out.data(), n, DType::bf16);
  auto w3 = c.reduce_scatter_async(d.data(), d_out.data(), n, DType::i64, ReduceOp::max);
  auto w4 = c.broadcast_async(e.data(), n, DType::u8, 0);
  while (!w4->done()) {
  }
  w3->wait();
  w2->wait();
  w1->wait();
  std::vector<uint8_t> want(a.size());
  for (size_t i = 0; i < n; ++i) store_reduced(DType::f32, ReduceOp::sum, p, i, 1, want.data());
  expect_same(a_out.data(), want.data(), n, DType::f32, "async all_reduce", c);
  for (int r = 0; r < p; ++r) {
    auto blk = filled(DType::bf16, n, r, 2);
    expect_same(b_out.data() + r * n * 2, blk.data(), n, DType::bf16, "async all_gather", c);
  }
  std::vector<uint8_t> dw(n * p * 8 + 1);
  for (size_t i = 0; i < n * p; ++i) store_reduced(DType::i64, ReduceOp::max, p, i, 3, dw.data());
  expect_same(d_out.data(), dw.data() + me * n * 8, n, DType::i64, "async reduce_scatter", c);
  auto ew = filled(DType::u8, n, 0, 4);
  expect_same(e.data(), ew.data(), n, DType::u8, "async broadcast", c);
  // A burst of 16 all-reduces, all waited at the end.
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<std::unique_ptr<comm::Work>> works;
  for (int k = 0; k < 16; ++k) bufs.push_back(filled(DType::f16, 257, me, 10 + k));
  for (int k = 0; k < 16; ++k) {
    works.push_back(c.all_reduce_async(bufs[k].data(), bufs[k].data(), 257, DType::f16, ReduceOp::avg));
  }
  for (int k = 15; k >= 0; --k) {
    works[k]->wait();
    std::vector<uint8_t> w(bufs[k].size());
    for (size_t i = 0; i < 257; ++i) store_reduced(DType::f16, ReduceOp::avg, p, i, 10 + k, w.data());
    expect_same(bufs[k].data(), w.data(), 257, DType::f16, "burst all_reduce " + std::to_string(k), c);
  }
}

// Cost of the communicator over raw MPI: small blocking all-reduces, ours vs MPI_Allreduce on
// a communicator of its own.
void run_latency(Communicator& c) {
  auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&c);
  if (mpi == nullptr) throw Error("latency needs backend mpi");
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  const int n = 20000;
  for (size_t count : {size_t{1}, size_t{1} << 10, size_t{1} << 14, size_t{1} << 18, size_t{1} << 22}) {
    std::vector<float> x(count, 1.0f);
    auto time = [&](auto&& op) {
      for (int i = 0; i < 200; ++i) op();
      MPI_Barrier(raw);
      auto t0 = std::chrono::steady_clock::now();
      int iters = static_cast<int>(std::max<size_t>(20, n / std::max<size_t>(1, count / 64)));
      for (int i = 0; i < iters; ++i) op();
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    double ours = time([&] { c.all_reduce(x.data(), x.data(), count, DType::f32, ReduceOp::sum); });
    double theirs = time([&] { MPI_Allreduce(MPI_IN_PLACE, x.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, raw); });
    if (c.rank() == 0) {
      std::printf("all_reduce f32 x%zu: ftune mpi %.2f us, MPI_Allreduce %.2f us\n", count, ours, theirs);
    }
  }
  MPI_Comm_free(&raw);
}

// Phase timeouts: a rank 1.7x the step timeout late is fine while saving (save timeout 10x),
// and ends the job in the step phase.
void run_phases(Communicator& c, double step_s) {
  std::vector<float> g(16, 1.0f);
  auto late_all_reduce = [&] {
    if (c.rank() == c.size() - 1) std::this_thread::sleep_for(std::chrono::duration<double>(1.7 * step_s));
    c.all_reduce(g.data(), g.data(), g.size(), DType::f32, ReduceOp::sum);
  };
  c.set_phase(comm::Phase::save);
  late_all_reduce();
  if (c.rank() == 0) {
    std::printf("OK save phase waited\n");
    std::fflush(stdout);
  }
  c.set_phase(comm::Phase::step);
  late_all_reduce();
}

// nccl-hang, nccl-async-error (with the fake NCCL of tests/runtime/comm/fake): one all-reduce,
// then the host blocks as in a stream synchronisation; the watchdog must end the job.
void run_nccl_stall(Communicator& c) {
  std::vector<float> g(16, 1.0f);
  c.all_reduce_async(g.data(), g.data(), g.size(), DType::f32, ReduceOp::sum)->wait();
  std::this_thread::sleep_for(std::chrono::seconds(10));
  throw Error("the nccl watchdog did not end the job within 10 s");
}

void write_pid(const std::string& dir, int rank) {
  if (dir.empty()) return;
  std::ofstream(dir + "/pid." + std::to_string(rank)) << getpid() << "\n";
}

void run_fault(Communicator& c, const std::string& mode, const Args& a) {
  write_pid(a.pid_dir, c.rank());
  c.barrier();  // every pid file exists before anyone fails
  std::vector<float> g(1024, 1.0f);
  int victim = c.size() - 1;
  for (int it = 0; it < 40; ++it) {
    if (c.rank() == victim && it == 10) {
      if (mode == "fault-stop-inside") {  // enters collective #12, then stops
        auto w = c.all_reduce_async(g.data(), g.data(), g.size(), DType::f32, ReduceOp::avg);
        raise(SIGSTOP);
        w->wait();
      }
      if (mode == "fault-mismatch") {  // a different collective as #12
        std::vector<float> all(g.size() * c.size());
        c.all_gather(g.data(), all.data(), g.size(), DType::f32);
      }
      if (mode == "fault-kill") raise(SIGKILL);
      if (mode == "fault-stop") raise(SIGSTOP);
      if (mode == "fault-throw") throw Error("injected fault before collective #12");
      if (mode == "fault-throw-pending") {  // with collective #12 in flight
        auto w = c.all_reduce_async(g.data(), g.data(), g.size(), DType::f32, ReduceOp::avg);
        throw Error("injected fault with collective #12 pending");
      }
    }
    c.all_reduce(g.data(), g.data(), g.size(), DType::f32, ReduceOp::avg);
  }
}

// The NCCL the nccl backend would use, after loading `preload` (LibTorch's CUDA library) if
// given (or `then_load` after), and how many distinct libnccl files the process then maps.
int run_nccl_lib(const Args& a) {
  if (!a.preload.empty() && dlopen(a.preload.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw Error("cannot preload " + a.preload + ": " + dlerror());
  }
  std::printf("%s\n", comm::nccl_library().c_str());
  if (!a.then_load.empty() && dlopen(a.then_load.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw Error("cannot load " + a.then_load + ": " + dlerror());
  }
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> files;
  for (std::string line; std::getline(maps, line);) {
    size_t slash = line.find('/');
    if (slash != std::string::npos && line.find("libnccl", slash) != std::string::npos) {
      files.insert(line.substr(slash));
    }
  }
  std::printf("mapped libnccl files: %zu\n", files.size());
  return 0;
}

int run(int argc, char** argv) {
  Args a = parse(argc, argv);
  if (a.mode == "nccl-lib") return run_nccl_lib(a);
  comm::World world = comm::init_world();
  if (a.mode == "mpi-error") {  // an MPI error becomes an Error naming the call and the rank
    try {
      int r = 0;
      FTUNE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_NULL, &r));
    } catch (const Error& e) {
      std::printf("caught: %s\n", e.what());
    }
    return 0;
  }
  // The last rank starts late: the others' startup timeout must end the job.
  if (a.mode == "slow-start" && world.rank == world.size - 1) {
    write_pid(a.pid_dir, world.rank);
    sleep(static_cast<unsigned>(3 * a.startup_timeout + 1));
  }
  comm::Timeouts t;
  t.step_s = a.timeout;
  t.startup_s = a.startup_timeout;
  t.save_s = 10 * a.timeout;
  auto c = comm::make_communicator(a.backend, world, t);
  if (a.chunk > 0) {
    auto* mpi = dynamic_cast<comm::MpiCommunicator*>(c.get());
    if (mpi == nullptr) throw Error("--chunk needs backend mpi");
    mpi->set_max_chunk(a.chunk);
  }
  c->set_phase(comm::Phase::step);
  if (a.mode == "ops") run_ops(*c);
  else if (a.mode == "split") run_split(*c);
  else if (a.mode == "async") run_async(*c);
  else if (a.mode == "placement") comm::print_placement(world, *c);
  else if (a.mode == "latency") run_latency(*c);
  else if (a.mode == "phases") run_phases(*c, a.timeout);
  else if (a.mode == "nccl-hang" || a.mode == "nccl-async-error") run_nccl_stall(*c);
  else if (a.mode.rfind("fault-", 0) == 0) run_fault(*c, a.mode, a);
  else if (a.mode == "slow-start") write_pid(a.pid_dir, world.rank);
  else throw Error("comm_rank: unknown mode " + a.mode);
  c->barrier();
  if (c->rank() == 0) {
    std::printf("OK %s: %d checks over %d ranks, backend %s\n", a.mode.c_str(), g_checks, c->size(),
                c->backend());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace ftune::test

int main(int argc, char** argv) {
  return ftune::comm::run_or_abort([&] { return ftune::test::run(argc, argv); });
}
