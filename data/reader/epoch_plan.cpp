#include "data/reader/epoch_plan.h"

#include <numeric>

namespace ftune::data {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

bool is_validation_document(int64_t global_doc, double val_fraction) {
  if (val_fraction <= 0.0) return false;
  // A fixed salt keeps this hash apart from the shuffle streams below.
  uint64_t h = mix64(static_cast<uint64_t>(global_doc) ^ 0x5EEDF00DCAFEull);
  double u = static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  return u < val_fraction;
}

std::vector<int64_t> split_documents(const ShardSet& set, Split split, double val_fraction) {
  std::vector<int64_t> docs;
  bool want_val = split == Split::validation;
  for (int64_t d = 0; d < set.documents(); ++d) {
    if (is_validation_document(d, val_fraction) == want_val) docs.push_back(d);
  }
  return docs;
}

namespace {

// Fisher-Yates with splitmix64, so the order is the same on every platform (std::shuffle's is
// implementation-defined). The modulo bias is below 2^-40 for any realistic size.
template <class T>
void shuffle(std::vector<T>& v, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = v.size(); i > 1; --i) {
    state = mix64(state);
    std::swap(v[i - 1], v[state % i]);
  }
}

uint64_t stream_seed(int64_t seed, int64_t epoch, uint64_t purpose) {
  return mix64(mix64(static_cast<uint64_t>(seed)) ^ mix64(static_cast<uint64_t>(epoch) * 2 + purpose));
}

}  // namespace

EpochPlan::EpochPlan(const ShardSet& set, const std::vector<int64_t>& docs, const ReaderConfig& cfg,
                     int64_t epoch)
    : epoch_(epoch) {
  std::vector<int64_t> doc_order = docs;
  if (cfg.shuffle) shuffle(doc_order, stream_seed(cfg.seed, epoch, 0));
  if (cfg.packing == "pack") {
    plan_pack(set, doc_order, cfg);
  } else {
    plan_concat(set, doc_order, cfg.seq_len);
  }
  if (cfg.shuffle) shuffle(order_, stream_seed(cfg.seed, epoch, 1));
}

void EpochPlan::plan_concat(const ShardSet& set, const std::vector<int64_t>& docs, int64_t seq_len) {
  stream_docs_ = docs;
  stream_starts_.reserve(docs.size() + 1);
  stream_starts_.push_back(0);
  for (int64_t d : docs) stream_starts_.push_back(stream_starts_.back() + set.document(d).length);
  // Sample i holds stream tokens [i*L, (i+1)*L); its last label peeks at token (i+1)*L. The tail
  // shorter than one window is left out of this epoch (a different tail each shuffled epoch).
  order_.resize(static_cast<size_t>(stream_starts_.back() / seq_len));
  std::iota(order_.begin(), order_.end(), 0);
}

// Next-fit packing in shuffled order: a document that fits in seq_len is never split; it opens
// a new row when it does not fit in the current one.
void EpochPlan::plan_pack(const ShardSet& set, const std::vector<int64_t>& docs, const ReaderConfig& cfg) {
  const int64_t L = cfg.seq_len;
  int64_t used = 0;  // [tokens] in the row being filled
  row_start_.push_back(0);
  auto place = [&](int64_t doc, int64_t start, int64_t len) {
    if (used + len > L) {
      pack_stats_.padding_tokens += L - used;
      row_start_.push_back(static_cast<int64_t>(segments_.size()));
      used = 0;
    }
    segments_.push_back({doc, start, len});
    used += len;
  };
  for (int64_t d : docs) {
    int64_t len = set.document(d).length;
    if (len == 0) continue;
    if (len <= L) {
      place(d, 0, len);
    } else if (cfg.long_docs == "truncate") {
      pack_stats_.truncated_documents += 1;
      pack_stats_.dropped_tokens += len - L;
      place(d, 0, L);
    } else {
      pack_stats_.split_documents += 1;
      for (int64_t s = 0; s < len; s += L) place(d, s, std::min(L, len - s));
    }
  }
  if (used > 0) {
    pack_stats_.padding_tokens += L - used;
    row_start_.push_back(static_cast<int64_t>(segments_.size()));
  }
  order_.resize(row_start_.size() - 1);
  std::iota(order_.begin(), order_.end(), 0);
}

}  // namespace ftune::data
