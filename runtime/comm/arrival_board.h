// Who did not arrive (internal). Every rank of a communicator records, in memory shared by the
// ranks of its node (an MPI-3 shared window), the sequence number of the last collective it
// entered and completed, and its pid. A rank whose collective times out reads the slots of its
// node's ranks without their participation, so a peer that is stopped (SIGSTOP), killed or
// busy elsewhere is still named; /proc/<pid>/stat says which of the three it is.
//
// Limits: a rank sees only its own node's slots. Ranks on other nodes are listed as not
// visible; their own node's ranks time out too and name them (the communicator lets a rank
// that sees a culprit report first, see MpiCommunicator). The cost per collective is two
// relaxed stores, one release store and a clock read.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace ftune::comm {

struct MissingReport {
  std::string text;           // "not arrived: rank 1 (last entered #16, stopped)"
  // What every other rank of this node entered last, for the caller to compare with what it
  // called under the same sequence number (different collectives on different ranks).
  struct Seen {
    int world_rank;
    uint64_t entered;    // [collective seq]
    uint64_t signature;  // of #entered
  };
  std::vector<Seen> peers;
  bool culprit_here = false;  // a rank on this node did not arrive, or is stopped or gone
  bool others_remote = false; // some members live on other nodes
};

class ArrivalBoard {
 public:
  explicit ArrivalBoard(MPI_Comm comm);  // collective over comm
  ~ArrivalBoard();
  ArrivalBoard(const ArrivalBoard&) = delete;
  ArrivalBoard& operator=(const ArrivalBoard&) = delete;

  // This rank issued collective #seq; `signature` encodes what it is (op, dtype, count), so a
  // timed-out peer can tell a rank that called something else.
  void enter(uint64_t seq, uint64_t signature);
  void complete(uint64_t seq);  // ... and saw it finish
  void alive();                 // a sign of life while polling
  MissingReport missing(uint64_t seq) const;
  bool claim_report();          // true for the first rank of this node that asks

 private:
  // A cache line each: ranks write their own slot at every collective, and the 8-byte atomics
  // must stay aligned (a header of 4 bytes in front would split them across lines).
  struct alignas(64) Slot {
    std::atomic<uint64_t> entered{0};    // [collective seq]
    std::atomic<uint64_t> signature{0};  // of collective #entered
    std::atomic<uint64_t> completed{0};  // [collective seq]
    std::atomic<int64_t> active_ns{0};   // [CLOCK_MONOTONIC ns] last sign of life
    int32_t pid = 0;
    int32_t world_rank = -1;
  };
  struct alignas(64) Header {
    std::atomic<int32_t> reporter{0};
  };
  static_assert(std::atomic<uint64_t>::is_always_lock_free, "slots are shared between processes");

  MPI_Win win_ = MPI_WIN_NULL;
  Header* header_ = nullptr;
  Slot* slots_ = nullptr;  // [local_size_]
  Slot* mine_ = nullptr;
  int local_size_ = 0;
  std::vector<int> remote_;  // world ranks of this communicator on other nodes
  std::string host_;
};

int64_t monotonic_ns();
std::string rank_list(std::vector<int> ranks);  // "1, 4-7"

}  // namespace ftune::comm
