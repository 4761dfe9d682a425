// One MPI rank of test_reader_mpi: reads one epoch of the set in argv[1] as rank r of W and
// sends its sample ids to rank 0, which checks that the ranks' rows are disjoint and cover
// every full global batch of the epoch. Prints "OK <samples>" on rank 0, exits non-zero otherwise.
#include "data/reader/token_shard_reader.h"

#include <mpi.h>

#include <cstdio>
#include <set>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int rc = 0;
  try {
    ftune::data::ReaderConfig cfg;
    cfg.seq_len = 64;
    cfg.global_batch = 12;
    auto set = ftune::data::ShardSet::open(argv[1]);
    ftune::data::TokenShardReader reader(set, cfg, ftune::data::Split::train, rank, world);
    std::vector<int64_t> mine;
    for (int64_t s = 0; s < reader.steps_per_epoch(); ++s) {
      auto b = reader.next();
      mine.insert(mine.end(), b.sample_ids.begin(), b.sample_ids.end());
    }
    int n = static_cast<int>(mine.size());
    std::vector<int64_t> all(static_cast<size_t>(n) * static_cast<size_t>(world));
    MPI_Gather(mine.data(), n, MPI_INT64_T, all.data(), n, MPI_INT64_T, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      std::set<int64_t> unique(all.begin(), all.end());
      int64_t want = reader.steps_per_epoch() * cfg.global_batch;
      if (static_cast<int64_t>(unique.size()) != want || static_cast<int64_t>(all.size()) != want) {
        std::printf("FAIL: %zu samples, %zu distinct, want %lld\n", all.size(), unique.size(),
                    static_cast<long long>(want));
        rc = 1;
      } else {
        std::printf("OK %zu samples over %d ranks\n", unique.size(), world);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    rc = 2;
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}
