#include "data/shards/shard_index.h"

#include "common/error.h"
#include "data/shards/format.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ftune::data {

namespace {
nlohmann::json to_json(const ShardIndex& ix) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : ix.shards) {
    shards.push_back({{"file", s.file},
                      {"documents", s.documents},
                      {"tokens", s.tokens},
                      {"masked_tokens", s.masked_tokens}});
  }
  return {{"kind", format::kIndexKind},       {"format_version", ix.format_version},
          {"tokenizer_hash", ix.tokenizer_hash}, {"vocab_size", ix.vocab_size},
          {"bos_id", ix.bos_id},              {"eos_id", ix.eos_id},
          {"token_dtype", ix.token_dtype},    {"has_loss_mask", ix.has_loss_mask},
          {"tool_version", ix.tool_version},  {"documents", ix.documents},
          {"tokens", ix.tokens},              {"masked_tokens", ix.masked_tokens},
          {"shards", shards}};
}

ShardIndex from_json(const nlohmann::json& j) {
  if (j.value("kind", "") != format::kIndexKind) {
    throw Error(std::string("\"kind\" is not \"") + format::kIndexKind + "\"");
  }
  ShardIndex ix;
  ix.format_version = j.at("format_version").get<int64_t>();
  ix.tokenizer_hash = j.at("tokenizer_hash").get<std::string>();
  ix.vocab_size = j.at("vocab_size").get<int64_t>();
  ix.bos_id = j.at("bos_id").get<int64_t>();
  ix.eos_id = j.at("eos_id").get<int64_t>();
  ix.token_dtype = j.at("token_dtype").get<std::string>();
  ix.has_loss_mask = j.at("has_loss_mask").get<bool>();
  ix.tool_version = j.value("tool_version", "");
  ix.documents = j.at("documents").get<int64_t>();
  ix.tokens = j.at("tokens").get<int64_t>();
  ix.masked_tokens = j.at("masked_tokens").get<int64_t>();
  for (const auto& s : j.at("shards")) {
    ix.shards.push_back({s.at("file").get<std::string>(), s.at("documents").get<int64_t>(),
                         s.at("tokens").get<int64_t>(), s.at("masked_tokens").get<int64_t>()});
  }
  return ix;
}
}  // namespace

ShardIndex ShardIndex::read(const std::string& dir) {
  std::string path = dir + "/" + format::kIndexFile;
  if (!std::filesystem::is_directory(dir)) throw Error("shard directory " + dir + " does not exist");
  std::ifstream in(path);
  if (!in) {
    throw Error("no " + std::string(format::kIndexFile) + " in " + dir +
                ": not a shard set, or its writer did not finish (re-run `ftune data tokenize`)");
  }
  try {
    return from_json(nlohmann::json::parse(in));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + " is malformed: " + e.what());
  } catch (const Error& e) {
    throw Error(path + " is malformed: " + e.what());
  }
}

void ShardIndex::write(const std::string& dir) const {
  write_file_atomically(dir + "/" + format::kIndexFile, to_json(*this).dump(2) + "\n");
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  std::filesystem::path p(path);
  std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error("cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  bool ok = ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + std::strerror(err));
  }
}

}  // namespace ftune::data
