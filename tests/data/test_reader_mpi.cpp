// Real MPI ranks (mpirun -np 2) read one epoch: their rows are disjoint and cover the epoch.
#include "tests/data/reader_fixtures.h"
#include "tests/support/test_support.h"

#include <gtest/gtest.h>

namespace ftune::test {
namespace {

TEST(ReaderMpi, TwoProcessesReadDisjointRowsCoveringTheEpoch) {
  TempDir tmp;
  make_coded_set(tmp.file("set"), 160, 150, 31);
  std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 " +
                    shell_quote(FTUNE_READER_MPI_RANK) + " " + shell_quote(tmp.file("set"));
  auto r = run_shell(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("over 2 ranks"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ftune::test
