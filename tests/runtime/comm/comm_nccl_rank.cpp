// One rank of the nccl backend tests (under mpirun, one GPU per rank): every collective x
// dtype x op on device buffers against comm_reference.h, with a compute stream of its own so
// that the event ordering is what makes the results visible. Exits 77 ("skip") without a GPU.
#include "common/error.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/world.h"
#include "tests/runtime/comm/comm_reference.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace ftune::test {
namespace {

#define CUDA_OK(call)                                                                    \
  do {                                                                                   \
    cudaError_t e_ = (call);                                                             \
    if (e_ != cudaSuccess) throw Error(std::string(#call) + ": " + cudaGetErrorString(e_)); \
  } while (0)

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) { CUDA_OK(cudaMalloc(&p_, bytes + 1)); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

struct Rig {
  comm::Communicator& c;
  cudaStream_t compute;
  int checks = 0;

  void up(DeviceBuffer& d, const std::vector<uint8_t>& h) {
    CUDA_OK(cudaMemcpyAsync(d.get(), h.data(), h.size() - 1, cudaMemcpyHostToDevice, compute));
  }
  std::vector<uint8_t> down(const DeviceBuffer& d, size_t bytes) {
    std::vector<uint8_t> h(bytes + 1);
    CUDA_OK(cudaMemcpyAsync(h.data(), d.get(), bytes, cudaMemcpyDeviceToHost, compute));
    CUDA_OK(cudaStreamSynchronize(compute));
    return h;
  }
  // Exact, except avg of floats: NCCL's order of rounding is its own.
  void expect(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, size_t n, DType t,
              ReduceOp op, const std::string& what) {
    ++checks;
    bool loose = op == ReduceOp::avg && !comm::is_integer(t);
    double tol = t == DType::f32 ? 1e-6 : t == DType::f16 ? 1e-3 : 1e-2;
    for (size_t i = 0; i < n; ++i) {
      double g = load(t, got.data(), i), w = load(t, want.data(), i);
      bool ok = loose ? std::fabs(g - w) <= tol * std::max(1.0, std::fabs(w))
                      : first_difference(got.data() + i * comm::dtype_size(t),
                                         want.data() + i * comm::dtype_size(t), 1, t) < 0;
      if (!ok) {
        throw Error(what + " " + comm::dtype_name(t) + " x" + std::to_string(n) + " on rank " +
                    std::to_string(c.rank()) + ": element " + std::to_string(i) + " is " +
                    std::to_string(g) + ", want " + std::to_string(w));
      }
    }
  }
};

void check_dtype(Rig& r, DType t, size_t n, int& salt) {
  int p = r.c.size(), me = r.c.rank();
  size_t es = comm::dtype_size(t);
  for (ReduceOp op : kAllOps) {
    if (comm::is_integer(t) && op == ReduceOp::avg) continue;
    ++salt;
    auto send = filled(t, n, me, salt);
    std::vector<uint8_t> want(send.size());
    for (size_t i = 0; i < n; ++i) store_reduced(t, op, p, i, salt, want.data());
    DeviceBuffer d_send(n * es), d_recv(n * es);
    r.up(d_send, send);
    r.c.all_reduce_async(d_send.get(), d_recv.get(), n, t, op)->wait();
    r.expect(r.down(d_recv, n * es), want, n, t, op, "all_reduce");
    r.c.all_reduce(d_send.get(), d_send.get(), n, t, op);
    r.expect(r.down(d_send, n * es), want, n, t, op, "all_reduce in place");

    auto rs = filled(t, n * p, me, salt);
    std::vector<uint8_t> rs_all(rs.size());
    for (size_t i = 0; i < n * p; ++i) store_reduced(t, op, p, i, salt, rs_all.data());
    std::vector<uint8_t> rs_want(rs_all.begin() + me * n * es, rs_all.begin() + (me + 1) * n * es + 1);
    DeviceBuffer d_rs(n * p * es), d_rs_out(n * es);
    r.up(d_rs, rs);
    r.c.reduce_scatter(d_rs.get(), d_rs_out.get(), n, t, op);
    r.expect(r.down(d_rs_out, n * es), rs_want, n, t, op, "reduce_scatter");
  }
  ++salt;
  auto mine = filled(t, n, me, salt);
  std::vector<uint8_t> all(n * p * es + 1);
  for (int k = 0; k < p; ++k) {
    auto b = filled(t, n, k, salt);
    std::copy(b.begin(), b.begin() + n * es, all.begin() + k * n * es);
  }
  DeviceBuffer d_mine(n * es), d_all(n * p * es);
  r.up(d_mine, mine);
  r.c.all_gather(d_mine.get(), d_all.get(), n, t);
  r.expect(r.down(d_all, n * p * es), all, n * p, t, ReduceOp::sum, "all_gather");
  for (int root = 0; root < p; ++root) {
    auto b = filled(t, n, root, salt);
    DeviceBuffer d(n * es);
    r.up(d, me == root ? b : std::vector<uint8_t>(n * es + 1, 0xCD));
    r.c.broadcast(d.get(), n, t, root);
    r.expect(r.down(d, n * es), b, n, t, ReduceOp::sum, "broadcast");
  }
}

int run() {
  comm::World world = comm::init_world();
  int devices = 0;
  cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device on %s (%s)\n", world.host.c_str(),
                rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
    return 77;
  }
  comm::Timeouts timeouts;
  timeouts.step_s = 60;
  auto c = comm::make_communicator("nccl", world, timeouts);
  c->set_phase(comm::Phase::step);
  comm::print_placement(world, *c);
  cudaStream_t compute;
  CUDA_OK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  c->set_compute_stream(compute);
  Rig rig{*c, compute};
  int salt = 0;
  for (DType t : kAllDTypes) {
    for (size_t n : {size_t{1}, size_t{37}, size_t{1} << 20}) check_dtype(rig, t, n, salt);
  }
  // Eight all-reduces in flight on one stream, then ordered after all of them at once.
  const size_t n = 1 << 16;
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  std::vector<std::unique_ptr<comm::Work>> works;
  for (int k = 0; k < 8; ++k) {
    bufs.push_back(std::make_unique<DeviceBuffer>(n * 4));
    rig.up(*bufs.back(), filled(DType::f32, n, c->rank(), 100 + k));
    works.push_back(c->all_reduce_async(bufs.back()->get(), bufs.back()->get(), n, DType::f32, ReduceOp::sum));
  }
  for (auto& w : works) w->wait();
  for (int k = 0; k < 8; ++k) {
    std::vector<uint8_t> want(n * 4 + 1);
    for (size_t i = 0; i < n; ++i) store_reduced(DType::f32, ReduceOp::sum, c->size(), i, 100 + k, want.data());
    rig.expect(rig.down(*bufs[k], n * 4), want, n, DType::f32, ReduceOp::sum, "async all_reduce");
  }
  c->barrier();
  CUDA_OK(cudaStreamDestroy(compute));
  if (c->rank() == 0) std::printf("OK nccl: %d checks over %d ranks\n", rig.checks, c->size());
  return 0;
}

}  // namespace
}  // namespace ftune::test

int main() {
  return ftune::comm::run_or_abort([] { return ftune::test::run(); });
}
