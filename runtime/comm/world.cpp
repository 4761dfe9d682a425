// MPI start-up and shut-down, the placement of this rank, and the job-wide error guard.
#include "runtime/comm/world.h"

#include "common/error.h"
#include "runtime/comm/mpi_check.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

namespace ftune::comm {
namespace {

std::string this_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

// Finalises MPI at normal exit if init_world() initialised it. A function-local static, so it
// is destroyed after main() returns, when every communicator is gone.
struct MpiSession {
  bool owned = false;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized) MPI_Finalize();
  }
};

MpiSession& session() {
  static MpiSession s;
  return s;
}

void start_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;  // the caller's MPI; the caller finalises it
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  if (rc != MPI_SUCCESS) {
    throw Error("[comm] MPI_Init_thread failed on " + this_host() + ": " + mpi_error_string(rc));
  }
  session().owned = true;
  // The backends call MPI from whichever thread drives a collective, one at a time; below
  // SERIALIZED even that is unsafe.
  if (provided < MPI_THREAD_SERIALIZED) {
    throw Error("[comm] this MPI library gives thread level " + std::to_string(provided) +
                " (need MPI_THREAD_SERIALIZED or better): use an MPI built with thread support");
  }
}

World learn_world() {
  World w;
  w.host = this_host();
  FTUNE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  FTUNE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  FTUNE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  ftune::set_process_identity(w.rank, w.host);
  MPI_Comm leaders;
  MPI_Comm node_comm = split_node(MPI_COMM_WORLD);
  FTUNE_MPI_CHECK(MPI_Comm_rank(node_comm, &w.local_rank));
  FTUNE_MPI_CHECK(MPI_Comm_size(node_comm, &w.local_size));
  // Node leaders (local rank 0, the lowest world rank of the node) number the nodes in rank
  // order; each leader tells its node.
  FTUNE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, w.local_rank == 0 ? 0 : MPI_UNDEFINED, w.rank,
                                 &leaders));
  int node_nodes[2] = {0, 0};
  if (w.local_rank == 0) {
    FTUNE_MPI_CHECK(MPI_Comm_rank(leaders, &node_nodes[0]));
    FTUNE_MPI_CHECK(MPI_Comm_size(leaders, &node_nodes[1]));
    MPI_Comm_free(&leaders);
  }
  FTUNE_MPI_CHECK(MPI_Bcast(node_nodes, 2, MPI_INT, 0, node_comm));
  MPI_Comm_free(&node_comm);
  w.node = node_nodes[0];
  w.nodes = node_nodes[1];
  return w;
}

const char* kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                               "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                               // srun sets this for job steps only, not in the batch script
                               "SLURM_STEP_NUM_TASKS"};

}  // namespace

std::string mpi_launcher_env() {
  if (const char* force = std::getenv("FTUNE_COMM_MPI")) {
    return std::string(force) == "1" ? "FTUNE_COMM_MPI" : "";
  }
  for (const char* var : kLauncherVars) {
    if (std::getenv(var) != nullptr) return var;
  }
  return "";
}

World init_world() {
  static std::once_flag once;
  static World world;
  static std::exception_ptr failure;
  std::call_once(once, [] {
    try {
      if (mpi_launcher_env().empty()) {
        world.host = this_host();
        ftune::set_process_identity(0, world.host);
        return;
      }
      start_mpi();
      world = learn_world();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
  return world;
}

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::string placement_line(const World& w, const Communicator& comm) {
  return "[comm] rank " + std::to_string(w.rank) + "/" + std::to_string(w.size) + " on " +
         w.host + ", local " + std::to_string(w.local_rank) + "/" +
         std::to_string(w.local_size) + ", node " + std::to_string(w.node) + "/" +
         std::to_string(w.nodes) + ", backend " + comm.backend() + ", device " +
         (comm.device() == Device::cuda ? "cuda" : "cpu");
}

void print_placement(const World& world, const Communicator& comm) {
  std::fprintf(stderr, "%s\n", placement_line(world, comm).c_str());
}

void abort_job(const std::string& line, int code) {
  if (!line.empty()) std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

int run_or_abort(const std::function<int()>& body) {
  std::string what;
  try {
    return body();
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  std::string who = ftune::process_identity();
  if (who.empty()) who = "rank 0 on " + this_host();
  std::string line = "[" + who + "] " + what;
  if (mpi_active()) abort_job(line, 1);
  std::fprintf(stderr, "%s\n", line.c_str());
  return 1;
}

MPI_Comm split_node(MPI_Comm comm) {
  int rank = 0, world_rank = 0;
  FTUNE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  FTUNE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  MPI_Comm node;
  const char* fake = std::getenv("FTUNE_COMM_RANKS_PER_NODE");
  int per_node = fake ? std::atoi(fake) : 0;
  if (per_node > 0) {
    FTUNE_MPI_CHECK(MPI_Comm_split(comm, world_rank / per_node, rank, &node));
  } else {
    FTUNE_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  }
  FTUNE_MPI_CHECK(MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN));
  return node;
}

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, static_cast<size_t>(len));
}

void mpi_failed(const char* call, int code, const char* file, int line) {
  std::string who = ftune::process_identity();
  throw Error("[comm] " + std::string(call) + " failed: " + mpi_error_string(code) + " (" +
              (who.empty() ? this_host() : who) + ", " + file + ":" + std::to_string(line) + ")");
}

}  // namespace ftune::comm
