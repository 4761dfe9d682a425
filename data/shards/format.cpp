#include "data/shards/format.h"

#include <cstdio>

namespace ftune::data::format {

std::string shard_file_name(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05lld.h5", static_cast<long long>(index));
  return buf;
}

std::string item_shard_file_name(int64_t item, int64_t piece) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "shard-%06lld-%04lld.h5", static_cast<long long>(item), static_cast<long long>(piece));
  return buf;
}

int64_t item_of_shard_file_name(const std::string& name) {
  long long item = -1, piece = -1;
  int used = 0;
  if (std::sscanf(name.c_str(), "shard-%6lld-%4lld.h5%n", &item, &piece, &used) != 2) return -1;
  if (static_cast<size_t>(used) != name.size() || item < 0 || piece < 0) return -1;
  return item_shard_file_name(item, piece) == name ? item : -1;
}

std::string version_refusal(int64_t v) {
  return "format version " + std::to_string(v) + ", this ftune reads " + std::to_string(kMinReadVersion) + ".." +
         std::to_string(kVersion);
}

std::string temp_file_name(const std::string& final_name) { return "." + final_name + ".tmp"; }

bool is_shard_file_name(const std::string& name) {
  return name.rfind("shard-", 0) == 0 && name.size() > 9 &&
         name.compare(name.size() - 3, 3, ".h5") == 0;
}

}  // namespace ftune::data::format
