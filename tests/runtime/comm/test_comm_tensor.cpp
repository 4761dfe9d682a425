// runtime/comm/tensor_ops.h: tensors through `local` in-process, and through `mpi` by running
// this same binary under mpirun -np 3 (CommTensorRanks, which only runs in that child mode).
#include "common/error.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/tensor_ops.h"
#include "runtime/comm/world.h"
#include "tests/support/test_support.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

namespace ftune::test {
namespace {

bool child() { return std::getenv("FTUNE_COMM_TENSOR_CHILD") != nullptr; }

const at::ScalarType kTypes[] = {at::kFloat, at::kBFloat16, at::kHalf, at::kInt, at::kLong, at::kByte};

TEST(CommTensor, DtypesMapAndOthersAreRefusedWithAHint) {
  EXPECT_EQ(comm::dtype_of(at::zeros({2}, at::kBFloat16)), comm::DType::bf16);
  EXPECT_EQ(comm::dtype_of(at::zeros({2}, at::kByte)), comm::DType::u8);
  try {
    comm::dtype_of(at::zeros({2}, at::kDouble));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Double cannot be communicated: convert to float32"),
              std::string::npos) << e.what();
  }
}

TEST(CommTensor, LocalCollectivesOnEveryDtype) {
  auto c = comm::make_communicator("local", comm::World{}, {});
  for (auto st : kTypes) {
    at::Tensor t = at::arange(12, at::TensorOptions().dtype(st)).reshape({3, 4});
    at::Tensor want = t.clone();
    comm::all_reduce(*c, t, comm::ReduceOp::max);
    EXPECT_TRUE(t.equal(want)) << c10::toString(st);
    at::Tensor out = at::empty({3, 4}, t.options());
    comm::reduce_scatter(*c, t, out, comm::ReduceOp::sum);
    EXPECT_TRUE(out.equal(want));
    comm::all_gather(*c, t, out);
    EXPECT_TRUE(out.equal(want));
    comm::broadcast(*c, t, 0);
  }
}

TEST(CommTensor, BadTensorsSayWhatToChange) {
  auto c = comm::make_communicator("local", comm::World{}, {});
  at::Tensor t = at::zeros({4, 4});
  at::Tensor tt = t.t();
  EXPECT_THROW(comm::all_reduce(*c, tt, comm::ReduceOp::sum), Error);
  at::Tensor small = at::zeros({3});
  try {
    comm::all_gather(*c, t, small);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16 input and 3 output elements"), std::string::npos) << e.what();
  }
  at::Tensor halves = at::zeros({16}, at::kHalf);
  EXPECT_THROW(comm::reduce_scatter(*c, t, halves, comm::ReduceOp::sum), Error);
}

TEST(CommTensor, MpiRanksAgreeThroughTensors) {
  if (child()) GTEST_SKIP() << "parent only";
  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  auto r = run_shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
                     "-x FTUNE_COMM_TENSOR_CHILD=1 -x OMP_NUM_THREADS=1 -np 3 " + shell_quote(self) +
                     " --gtest_color=no --gtest_filter='CommTensorRanks.*'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("FAILED"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[       OK ] CommTensorRanks.SumGatherScatterBroadcast"), std::string::npos)
      << r.output;
}

TEST(CommTensorRanks, SumGatherScatterBroadcast) {
  if (!child()) GTEST_SKIP() << "runs under mpirun from CommTensor.MpiRanksAgreeThroughTensors";
  comm::World w = comm::init_world();
  auto c = comm::make_communicator("mpi", w, {});
  int p = c->size(), me = c->rank();
  for (auto st : kTypes) {
    auto opt = at::TensorOptions().dtype(st);
    at::Tensor t = at::full({5}, me + 1, opt);
    comm::all_reduce(*c, t, comm::ReduceOp::sum);
    EXPECT_TRUE(t.equal(at::full({5}, p * (p + 1) / 2, opt))) << c10::toString(st);
    at::Tensor mine = at::full({2}, me, opt), all = at::empty({2 * p}, opt);
    comm::all_gather(*c, mine, all);
    EXPECT_TRUE(all.equal(at::arange(p, opt).repeat_interleave(2))) << c10::toString(st);
    at::Tensor out = at::empty({2}, opt);
    comm::reduce_scatter(*c, all, out, comm::ReduceOp::max);  // every rank holds the same `all`
    EXPECT_TRUE(out.equal(at::full({2}, me, opt))) << c10::toString(st);
    at::Tensor b = me == 1 ? at::arange(4, opt) : at::zeros({4}, opt);
    comm::broadcast(*c, b, 1);
    EXPECT_TRUE(b.equal(at::arange(4, opt))) << c10::toString(st);
  }
}

}  // namespace
}  // namespace ftune::test
