#include "data/shards/shard_verify.h"

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/h5.h"
#include "data/shards/shard_set.h"

#include <algorithm>
#include <filesystem>
#include <set>

namespace ftune::data {

namespace {

constexpr int64_t kScanBlock = 1 << 20;  // [tokens] read per step of the scan

// Reads every token and mask value of one shard; returns the problems found.
std::vector<std::string> scan_shard(const ShardMeta& m) {
  std::vector<std::string> problems;
  std::lock_guard<std::mutex> lock(h5::mutex());
  h5::Handle file = h5::open_read_only(m.path);
  h5::Handle tokens = h5::open_dataset(file.get(), format::kTokens);
  h5::Handle mask;
  if (m.has_loss_mask) mask = h5::open_dataset(file.get(), format::kLossMask);
  std::vector<uint32_t> ids;
  std::vector<uint8_t> values;
  int64_t masked = 0;
  for (int64_t begin = 0; begin < m.tokens; begin += kScanBlock) {
    int64_t n = std::min(kScanBlock, m.tokens - begin);
    ids.resize(static_cast<size_t>(n));
    h5::read_range(tokens.get(), H5T_NATIVE_UINT32, begin, n, ids.data());
    auto bad = std::find_if(ids.begin(), ids.end(), [&](uint32_t id) { return id >= m.vocab_size; });
    if (bad != ids.end() && problems.empty()) {
      problems.push_back("token " + std::to_string(begin + (bad - ids.begin())) + " has id " +
                         std::to_string(*bad) + ", not below vocab_size " + std::to_string(m.vocab_size));
    }
    if (!mask) continue;
    values.resize(static_cast<size_t>(n));
    h5::read_range(mask.get(), H5T_NATIVE_UINT8, begin, n, values.data());
    auto odd = std::find_if(values.begin(), values.end(), [](uint8_t v) { return v > 1; });
    if (odd != values.end()) {
      problems.push_back("loss_mask[" + std::to_string(begin + (odd - values.begin())) + "] is " +
                         std::to_string(*odd) + " (must be 0 or 1)");
      return problems;
    }
    masked += std::count(values.begin(), values.end(), uint8_t{0});
  }
  if (mask && masked != m.masked_tokens) {
    problems.push_back("loss_mask has " + std::to_string(masked) + " zeros, attribute n_masked_tokens says " +
                       std::to_string(m.masked_tokens));
  }
  return problems;
}

void check_index_totals(const ShardIndex& ix, const std::string& index_path, VerifyReport& r) {
  int64_t docs = 0, tokens = 0, masked = 0;
  for (const auto& e : ix.shards) docs += e.documents, tokens += e.tokens, masked += e.masked_tokens;
  if (docs != ix.documents || tokens != ix.tokens || masked != ix.masked_tokens) {
    r.problems.push_back(index_path + ": totals (documents, tokens, masked) differ from the sums over its shards");
  }
  if (!format::version_readable(ix.format_version)) {
    r.problems.push_back(index_path + ": " + format::version_refusal(ix.format_version));
  }
}

// Shard files in the directory that the index does not list (a set mixed with another).
void check_directory(const std::string& dir, const ShardIndex& ix, VerifyReport& r) {
  std::set<std::string> listed;
  for (const auto& e : ix.shards) listed.insert(e.file);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (format::is_shard_file_name(name) && !listed.count(name)) {
      r.problems.push_back(entry.path().string() + " is not listed in index.json");
    }
  }
}

}  // namespace

VerifyReport verify_shard_set(const std::string& dir, const std::function<void(const std::string&)>& progress) {
  VerifyReport r;
  ShardIndex ix;
  try {
    ix = ShardIndex::read(dir);
  } catch (const Error& e) {
    r.problems.push_back(e.what());
    return r;
  }
  std::string index_path = dir + "/" + format::kIndexFile;
  check_index_totals(ix, index_path, r);
  check_directory(dir, ix, r);
  for (const auto& entry : ix.shards) {
    std::string path = dir + "/" + entry.file;
    if (progress) progress(entry.file);
    try {
      ShardMeta m = read_shard_meta(path);  // attributes, shapes, offsets
      if (m.tokenizer_hash != ix.tokenizer_hash) {
        r.problems.push_back("shard " + path + " was written with tokenizer " + m.tokenizer_hash +
                             ", index.json names " + ix.tokenizer_hash);
      }
      std::string mismatch = index_mismatch(m, entry, ix);
      if (!mismatch.empty()) r.problems.push_back("shard " + path + " does not match index.json: " + mismatch);
      for (const auto& p : scan_shard(m)) r.problems.push_back("shard " + path + ": " + p);
      r.tokens_checked += m.tokens;
    } catch (const Error& e) {
      std::string msg = e.what();
      r.problems.push_back(msg.rfind("shard ", 0) == 0 ? msg : "shard " + path + ": " + msg);
    }
    r.shards_checked += 1;
  }
  return r;
}

}  // namespace ftune::data
