// MPI error checking for the backends (internal): with MPI_ERRORS_RETURN set on every
// communicator, a failed call returns here and becomes an ftune::Error that names the call,
// MPI's own message, and this process's rank and host.
#pragma once

#include <mpi.h>

#include <string>

namespace ftune::comm {

std::string mpi_error_string(int code);

// The ranks of `comm` that share this node's memory (MPI_COMM_TYPE_SHARED), ordered as in
// comm. FTUNE_COMM_RANKS_PER_NODE=N instead groups every N consecutive world ranks, so that
// tests on one machine can play several nodes (they still share memory, as the board needs).
MPI_Comm split_node(MPI_Comm comm);
[[noreturn]] void mpi_failed(const char* call, int code, const char* file, int line);

}  // namespace ftune::comm

#define FTUNE_MPI_CHECK(call)                                                         \
  do {                                                                                \
    int ftune_mpi_rc_ = (call);                                                       \
    if (ftune_mpi_rc_ != MPI_SUCCESS) ::ftune::comm::mpi_failed(#call, ftune_mpi_rc_, \
                                                                __FILE__, __LINE__); \
  } while (0)
