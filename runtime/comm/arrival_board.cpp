#include "runtime/comm/arrival_board.h"

#include "runtime/comm/mpi_check.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <new>

namespace ftune::comm {
namespace {

std::string this_host() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// What a peer process is doing, from /proc/<pid>/stat (same node, same pid namespace).
std::string process_state(int pid) {
  if (pid <= 0) return "state unknown";
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return kill(pid, 0) == 0 ? "state unknown" : "process gone";
  size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  char state = paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
  switch (state) {
    case 'T': case 't': return "stopped";
    case 'Z': case 'X': return "exited";
    case 'R': case 'S': case 'D': return "running";
    default: return "state unknown";
  }
}

bool looks_dead(const std::string& state) {
  return state == "stopped" || state == "exited" || state == "process gone";
}

std::string seconds_ago(int64_t then_ns) {
  if (then_ns == 0) return "never active";
  char buf[64];
  std::snprintf(buf, sizeof buf, "active %.1f s ago", (monotonic_ns() - then_ns) * 1e-9);
  return buf;
}

}  // namespace

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // one clock for every process of the node
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string rank_list(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

ArrivalBoard::ArrivalBoard(MPI_Comm comm) : host_(this_host()) {
  int comm_rank = 0, comm_size = 0, world_rank = 0;
  FTUNE_MPI_CHECK(MPI_Comm_rank(comm, &comm_rank));
  FTUNE_MPI_CHECK(MPI_Comm_size(comm, &comm_size));
  FTUNE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  MPI_Comm node = split_node(comm);
  int local_rank = 0;
  FTUNE_MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  FTUNE_MPI_CHECK(MPI_Comm_size(node, &local_size_));

  // The node's first rank holds the whole board; the others map it.
  // +64: the window is only 8-byte aligned; the board starts at the leader's next cache line,
  // at the same byte offset in every process (they may map the segment at other addresses).
  MPI_Aint bytes = local_rank == 0
                       ? static_cast<MPI_Aint>(64 + sizeof(Header) + sizeof(Slot) * local_size_)
                       : 0;
  void* base = nullptr;
  FTUNE_MPI_CHECK(MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, node, &base, &win_));
  MPI_Aint size0 = 0;
  int disp0 = 0;
  FTUNE_MPI_CHECK(MPI_Win_shared_query(win_, 0, &size0, &disp0, &base));
  auto addr = reinterpret_cast<uintptr_t>(base);
  int offset = static_cast<int>(((addr + 63) & ~uintptr_t{63}) - addr);  // [bytes] leader's
  FTUNE_MPI_CHECK(MPI_Bcast(&offset, 1, MPI_INT, 0, node));
  base = static_cast<char*>(base) + offset;
  header_ = static_cast<Header*>(base);
  slots_ = reinterpret_cast<Slot*>(static_cast<char*>(base) + sizeof(Header));
  if (local_rank == 0) {
    new (header_) Header();
    for (int i = 0; i < local_size_; ++i) new (slots_ + i) Slot();
  }
  FTUNE_MPI_CHECK(MPI_Barrier(node));
  mine_ = slots_ + local_rank;
  mine_->pid = static_cast<int32_t>(getpid());
  mine_->world_rank = world_rank;
  mine_->active_ns.store(monotonic_ns(), std::memory_order_relaxed);

  // Which members live elsewhere: the node's leader (its lowest world rank) names the node.
  int leader = world_rank;
  FTUNE_MPI_CHECK(MPI_Bcast(&leader, 1, MPI_INT, 0, node));
  std::vector<int> pairs(2 * static_cast<size_t>(comm_size));
  int mine[2] = {world_rank, leader};
  FTUNE_MPI_CHECK(MPI_Allgather(mine, 2, MPI_INT, pairs.data(), 2, MPI_INT, comm));
  for (int r = 0; r < comm_size; ++r) {
    if (pairs[2 * r + 1] != leader) remote_.push_back(pairs[2 * r]);
  }
  FTUNE_MPI_CHECK(MPI_Barrier(node));  // every slot's pid is written before anyone reads it
  MPI_Comm_free(&node);
}

ArrivalBoard::~ArrivalBoard() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // MPI_Win_free synchronises the node's ranks: during unwinding from an error the peers are
  // not freeing theirs, and waiting for them would hang the rank before it can abort the job.
  if (win_ != MPI_WIN_NULL && !finalized && std::uncaught_exceptions() == 0) MPI_Win_free(&win_);
}

void ArrivalBoard::enter(uint64_t seq, uint64_t signature) {
  mine_->signature.store(signature, std::memory_order_relaxed);
  mine_->entered.store(seq, std::memory_order_release);  // publishes the signature
  mine_->active_ns.store(monotonic_ns(), std::memory_order_relaxed);
}

void ArrivalBoard::complete(uint64_t seq) {
  // A maximum: async works finish out of order, and the nccl watchdog completes from its thread.
  uint64_t cur = mine_->completed.load(std::memory_order_relaxed);
  while (cur < seq && !mine_->completed.compare_exchange_weak(cur, seq, std::memory_order_relaxed)) {
  }
  mine_->active_ns.store(monotonic_ns(), std::memory_order_relaxed);
}

void ArrivalBoard::alive() { mine_->active_ns.store(monotonic_ns(), std::memory_order_relaxed); }

bool ArrivalBoard::claim_report() { return header_->reporter.exchange(1) == 0; }

MissingReport ArrivalBoard::missing(uint64_t seq) const {
  std::string absent, stuck;
  std::vector<int> finished;  // done with #seq while this rank still waits on it
  MissingReport r;
  for (int i = 0; i < local_size_; ++i) {
    const Slot& s = slots_[i];
    uint64_t entered = s.entered.load(std::memory_order_acquire);
    uint64_t sig = s.signature.load(std::memory_order_relaxed);
    if (&s != mine_ && s.entered.load(std::memory_order_acquire) == entered) {
      r.peers.push_back({s.world_rank, entered, sig});
    }
    uint64_t completed = s.completed.load(std::memory_order_relaxed);
    std::string state = process_state(s.pid);
    std::string who = "rank " + std::to_string(s.world_rank) + " (";
    if (entered < seq) {
      absent += (absent.empty() ? "" : ", ") + who + "last entered #" + std::to_string(entered) +
                ", " + state + ", " + seconds_ago(s.active_ns.load()) + ")";
    } else if (completed >= seq && &s != mine_) {
      finished.push_back(s.world_rank);
    } else if (completed < seq && looks_dead(state)) {
      stuck += (stuck.empty() ? "" : ", ") + who + state + ", " +
               seconds_ago(s.active_ns.load()) + ")";
    }
  }
  r.culprit_here = !absent.empty() || !stuck.empty();
  r.others_remote = !remote_.empty();
  if (!absent.empty()) r.text = "not arrived: " + absent;
  if (!stuck.empty()) r.text += (r.text.empty() ? "" : "; ") + std::string("arrived, then ") + stuck;
  if (absent.empty() && stuck.empty()) r.text = "every rank on " + host_ + " arrived";
  if (!finished.empty()) {
    // A healthy collective rarely lets peers finish this long before this rank: most often
    // the ranks called different collectives and MPI matched them wrongly.
    r.text += "; ranks " + rank_list(finished) + " finished #" + std::to_string(seq) +
              " without this rank (different collectives on different ranks?)";
  }
  if (!remote_.empty()) {
    r.text += "; ranks " + rank_list(remote_) + " are on other nodes (not visible from " + host_ + ")";
  }
  return r;
}

}  // namespace ftune::comm
