#include "data/shards/format.h"

#include <cstdio>

namespace ftune::data::format {

std::string shard_file_name(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05lld.h5", static_cast<long long>(index));
  return buf;
}

std::string temp_file_name(const std::string& final_name) { return "." + final_name + ".tmp"; }

bool is_shard_file_name(const std::string& name) {
  return name.rfind("shard-", 0) == 0 && name.size() > 9 &&
         name.compare(name.size() - 3, 3, ".h5") == 0;
}

}  // namespace ftune::data::format
