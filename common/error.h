// Errors for all of ftune: user-facing problems are exceptions with context; broken
// invariants go through FTUNE_CHECK, which names the statement, place, rank and host.
#pragma once

#include <stdexcept>
#include <string>

namespace ftune {

// Bad user input or a bad file: the message says what is wrong, where (file, line, key)
// and what to change. main() prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Rank and host of this process, for messages; set once by the launcher after MPI init.
void set_process_identity(int rank, const std::string& host);
std::string process_identity();  // "rank 3 on node17" or "" before set

[[noreturn]] void check_failed(const char* stmt, const std::string& msg, const char* func,
                               const char* file, int line);

}  // namespace ftune

// Internal invariant; throws ftune::Error with the failed statement and its place.
#define FTUNE_CHECK(cond, msg)                                                  \
  do {                                                                          \
    if (!(cond)) ::ftune::check_failed(#cond, (msg), __func__, __FILE__, __LINE__); \
  } while (0)
