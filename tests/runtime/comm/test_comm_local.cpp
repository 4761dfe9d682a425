// Backend `local`, the factory, and the pieces every backend shares (16-bit float conversions,
// rank lists), without MPI.
#include "common/error.h"
#include "runtime/comm/arrival_board.h"
#include "runtime/comm/comm_config.h"
#include "runtime/comm/factory.h"
#include "runtime/comm/half.h"
#include "runtime/comm/world.h"
#include "tests/runtime/comm/comm_reference.h"
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>

namespace ftune::test {
namespace {

TEST(CommHalf, EveryF16RoundTripsThroughF32) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = comm::f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(comm::f16_to_f32(comm::f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(comm::f32_to_f16(f), h) << "f16 0x" << std::hex << h;
  }
}

TEST(CommHalf, EveryBf16RoundTripsThroughF32) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float f = comm::bf16_to_f32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(comm::f32_to_bf16(f), b) << "bf16 0x" << std::hex << b;
  }
}

TEST(CommHalf, RoundsToNearestEvenAndSaturatesToInfinity) {
  EXPECT_EQ(comm::f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(comm::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);  // tie, even stays
  EXPECT_EQ(comm::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(comm::f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(comm::f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(comm::f32_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(comm::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(comm::f32_to_f16(std::ldexp(1.0f, -26)), 0x0000);  // below half of it
  EXPECT_EQ(comm::f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(comm::f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even
  EXPECT_EQ(comm::f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(comm::f16_to_f32(comm::f32_to_f16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(comm::bf16_to_f32(comm::f32_to_bf16(std::nanf("")))));
}

TEST(CommNames, DTypesAndOps) {
  EXPECT_EQ(comm::dtype_size(DType::bf16), 2u);
  EXPECT_EQ(comm::dtype_size(DType::i64), 8u);
  EXPECT_STREQ(comm::dtype_name(DType::f16), "f16");
  EXPECT_STREQ(comm::reduce_op_name(ReduceOp::avg), "avg");
  EXPECT_EQ(comm::rank_list({7, 1, 4, 5, 6}), "1, 4-7");
  EXPECT_EQ(comm::rank_list({}), "");
}

std::unique_ptr<comm::Communicator> local() {
  return comm::make_communicator("local", comm::World{}, comm::Timeouts{});
}

TEST(CommLocal, EveryCollectiveOfOneRankIsACopy) {
  auto c = local();
  EXPECT_STREQ(c->backend(), "local");
  EXPECT_EQ(c->size(), 1);
  int salt = 0;
  for (DType t : kAllDTypes) {
    const size_t n = 33;
    for (ReduceOp op : kAllOps) {
      if (comm::is_integer(t) && op == ReduceOp::avg) continue;
      auto send = filled(t, n, 0, ++salt);
      std::vector<uint8_t> recv(send.size()), want(send.size());
      for (size_t i = 0; i < n; ++i) store_reduced(t, op, 1, i, salt, want.data());
      c->all_reduce(send.data(), recv.data(), n, t, op);
      EXPECT_EQ(first_difference(recv.data(), want.data(), n, t), -1) << comm::dtype_name(t);
      std::fill(recv.begin(), recv.end(), 0);
      c->reduce_scatter_async(send.data(), recv.data(), n, t, op)->wait();
      EXPECT_EQ(first_difference(recv.data(), want.data(), n, t), -1) << comm::dtype_name(t);
    }
    auto send = filled(t, n, 0, ++salt);
    std::vector<uint8_t> recv(send.size());
    auto w = c->all_gather_async(send.data(), recv.data(), n, t);
    EXPECT_TRUE(w->done());
    EXPECT_EQ(first_difference(recv.data(), send.data(), n, t), -1);
    c->broadcast(send.data(), n, t, 0);
    EXPECT_THROW(c->broadcast(send.data(), n, t, 1), Error);
  }
}

TEST(CommLocal, IntegerAverageIsRefusedWithAReason) {
  auto c = local();
  int32_t v = 3;
  try {
    c->all_reduce(&v, &v, 1, DType::i32, ReduceOp::avg);
    FAIL() << "integer avg was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reduce with sum and divide"), std::string::npos) << e.what();
  }
}

TEST(CommLocal, SplitGivesAnotherLocalOrNullForNonMembers) {
  auto c = local();
  auto sub = c->split(3, 0);
  ASSERT_NE(sub, nullptr);
  EXPECT_STREQ(sub->backend(), "local");
  EXPECT_EQ(c->split(-1, 0), nullptr);
}

TEST(CommFactory, AutoIsLocalForOneRankAndBadBackendsSayWhatToUse) {
  comm::World one;
  one.host = "h";
  EXPECT_STREQ(comm::make_communicator("auto", one, {})->backend(), "local");
  try {
    comm::make_communicator("gloo", one, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use local, mpi, nccl or auto"), std::string::npos);
  }
  comm::World four = one;
  four.size = 4;
  try {
    comm::make_communicator("local", four, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4 ranks"), std::string::npos) << e.what();
  }
  comm::Timeouts bad;
  bad.step_s = 0;
  EXPECT_THROW(comm::make_communicator("local", one, bad), Error);
  // Without an MPI launcher, mpi explains how to get one.
  try {
    comm::make_communicator("mpi", one, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mpirun"), std::string::npos) << e.what();
  }
}

TEST(CommWorld, NoLauncherMeansAWorldOfOneWithoutMpi) {
  if (!comm::mpi_launcher_env().empty()) GTEST_SKIP() << "started under an MPI launcher";
  comm::World w = comm::init_world();
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.rank, 0);
  EXPECT_FALSE(comm::mpi_active());
  EXPECT_FALSE(w.host.empty());
  auto c = comm::make_communicator("auto", w, {});
  EXPECT_EQ(comm::placement_line(w, *c), "[comm] rank 0/1 on " + w.host +
                                             ", local 0/1, node 0/1, backend local, device cpu");
}

TEST(CommWorld, RunOrAbortTurnsAnExceptionIntoExitCodeOneWithTheRank) {
  testing::internal::CaptureStderr();
  int rc = comm::run_or_abort([]() -> int { throw Error("disk full"); });
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("[rank 0 on "), std::string::npos) << err;
  EXPECT_NE(err.find("] disk full"), std::string::npos) << err;
  EXPECT_EQ(comm::run_or_abort([] { return 7; }), 7);
}

TEST(CommLocal, TheRankProgramPassesEveryCheckAlone) {
  auto r = run_shell(shell_quote(FTUNE_COMM_RANK) + " ops local");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK ops"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("over 1 ranks, backend local"), std::string::npos) << r.output;
}

TEST(CommConfig, FieldsDefaultsAndValidation) {
  comm::CommConfig c;
  std::vector<std::string> keys;
  c.fields([&](const char* key, auto&, const char* help) {
    keys.push_back(key);
    EXPECT_GT(std::string(help).size(), 10u) << key;
  });
  EXPECT_EQ(keys, (std::vector<std::string>{"backend", "startup_timeout_s", "step_timeout_s",
                                            "save_timeout_s"}));
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.timeouts().step_s, 300);
  c.backend = "gloo";
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("comm.backend: \"gloo\" is not auto, local, mpi or nccl"),
              std::string::npos) << e.what();
  }
  c.backend = "mpi";
  c.step_timeout_s = -1;
  EXPECT_THROW(c.validate(), Error);
}

TEST(CommNccl, TheBackendLoadsTheWheelsNcclWithoutAGpu) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend (no nccl.h found)";
  auto r = run_shell(shell_quote(FTUNE_COMM_RANK) + " nccl-lib none");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nccl 2."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nvidia/nccl/lib/libnccl.so.2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mapped libnccl files: 1"), std::string::npos) << r.output;
}

TEST(CommNccl, AfterLibTorchTheBackendSharesItsNccl) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend (no nccl.h found)";
  std::string torch_cuda = FTUNE_TORCH_CUDA_LIB;
  if (torch_cuda.empty()) GTEST_SKIP() << "this LibTorch has no libtorch_cuda.so";
  auto r = run_shell(shell_quote(FTUNE_COMM_RANK) + " nccl-lib none --preload " + shell_quote(torch_cuda));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nvidia/nccl/lib/libnccl.so.2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mapped libnccl files: 1"), std::string::npos) << r.output;
}

TEST(CommNccl, ALibTorchLoadedLaterSharesTheBackendsNccl) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend (no nccl.h found)";
  std::string torch_cuda = FTUNE_TORCH_CUDA_LIB;
  if (torch_cuda.empty()) GTEST_SKIP() << "this LibTorch has no libtorch_cuda.so";
  auto r = run_shell(shell_quote(FTUNE_COMM_RANK) + " nccl-lib none --then-load " + shell_quote(torch_cuda));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mapped libnccl files: 1"), std::string::npos) << r.output;
}

TEST(CommNccl, WithoutMpiTheBackendSaysHowToStart) {
  if (!comm::nccl_available()) GTEST_SKIP() << "built without the nccl backend (no nccl.h found)";
  if (comm::mpi_active()) GTEST_SKIP() << "MPI is running";
  try {
    comm::make_communicator("nccl", comm::World{}, {});
    FAIL() << "nccl without MPI was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mpirun"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ftune::test
