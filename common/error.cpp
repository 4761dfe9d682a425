#include "common/error.h"

#include <sstream>

namespace ftune {
namespace {
std::string g_identity;  // [rank, host] once known
}

void set_process_identity(int rank, const std::string& host) {
  g_identity = "rank " + std::to_string(rank) + " on " + host;
}

std::string process_identity() { return g_identity; }

void check_failed(const char* stmt, const std::string& msg, const char* func, const char* file,
                  int line) {
  std::ostringstream os;
  os << msg << " (check `" << stmt << "` failed in " << func << " at " << file << ":" << line;
  if (!g_identity.empty()) os << ", " << g_identity;
  os << ")";
  throw Error(os.str());
}

}  // namespace ftune
