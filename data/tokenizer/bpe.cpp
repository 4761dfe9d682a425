#include "data/tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <stdexcept>

#include "data/tokenizer/unicode.h"

namespace ftune::data::tok {

// ---- StringIdMap ------------------------------------------------------------------------------

void StringIdMap::reserve(size_t n) {
  size_t want = 16;
  while (want < n * 2) want *= 2;
  if (want <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(want, Slot{});
  const uint64_t mask = want - 1;
  for (const Slot& s : old) {
    if (s.id < 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].id >= 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void StringIdMap::grow() { reserve(std::max<size_t>(16, size_ * 2)); }

bool StringIdMap::insert(std::string_view key, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t h = hash_bytes(key);
  const uint64_t mask = slots_.size() - 1;
  size_t i = h & mask;
  while (slots_[i].id >= 0) {
    const Slot& s = slots_[i];
    if (s.hash == h && std::string_view(keys_.data() + s.offset, s.length) == key) return false;
    i = (i + 1) & mask;
  }
  slots_[i] = Slot{h, uint32_t(keys_.size()), uint32_t(key.size()), id};
  keys_.append(key);
  ++size_;
  return true;
}

std::optional<int32_t> StringIdMap::find(std::string_view key) const {
  if (slots_.empty()) return std::nullopt;
  const uint64_t h = hash_bytes(key);
  const uint64_t mask = slots_.size() - 1;
  for (size_t i = h & mask; slots_[i].id >= 0; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == h && s.length == key.size() &&
        std::string_view(keys_.data() + s.offset, s.length) == key) {
      return s.id;
    }
  }
  return std::nullopt;
}

// ---- per-thread scratch and word cache --------------------------------------------------------

namespace {

std::atomic<uint64_t> g_next_instance{1};

struct Symbol {
  int32_t id;
  int32_t prev;   // index into symbols, -1 at the start
  int32_t next;   // index into symbols, -1 at the end
  uint32_t len;   // [bytes] of the word this symbol covers; 0 once merged into its left
};

struct Merge {
  uint32_t rank;
  int32_t pos;
  int32_t new_id;
};

// Heap order of `tokenizers`' Word::merge_all: lowest rank first, then leftmost position.
struct MergeAfter {
  bool operator()(const Merge& a, const Merge& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

// Word -> ids results for one model, bounded: cleared when full rather than evicting, which
// keeps lookups branch-light; natural text re-fills the frequent words within a few KB.
class WordCache {
 public:
  static constexpr size_t kMaxWordBytes = 256;  // longer words are rare; not worth caching
  static constexpr size_t kMaxEntries = 1 << 16;

  void bind(uint64_t owner) {
    if (owner_ == owner) return;
    owner_ = owner;
    clear();
  }
  bool find(std::string_view word, uint64_t h, std::vector<int32_t>& out) const {
    if (table_.empty()) return false;
    for (size_t i = h & kMask; table_[i].key_len != 0; i = (i + 1) & kMask) {
      const Entry& e = table_[i];
      if (e.hash == h && e.key_len == word.size() &&
          std::string_view(keys_.data() + e.key_off, e.key_len) == word) {
        out.insert(out.end(), ids_.begin() + e.ids_off, ids_.begin() + e.ids_off + e.ids_len);
        return true;
      }
    }
    return false;
  }
  void insert(std::string_view word, uint64_t h, const int32_t* ids, size_t n) {
    if (word.empty() || word.size() > kMaxWordBytes) return;
    if (table_.empty()) table_.assign(kMask + 1, Entry{});
    if (count_ >= kMaxEntries) clear();
    size_t i = h & kMask;
    while (table_[i].key_len != 0) i = (i + 1) & kMask;
    table_[i] = Entry{h, uint32_t(keys_.size()), uint32_t(word.size()), uint32_t(ids_.size()),
                      uint32_t(n)};
    keys_.append(word);
    ids_.insert(ids_.end(), ids, ids + n);
    ++count_;
  }

 private:
  static constexpr size_t kMask = kMaxEntries * 2 - 1;  // load factor <= 1/2
  struct Entry {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = 0;  // key_len 0: empty slot
    uint32_t ids_off = 0, ids_len = 0;
  };
  void clear() {
    if (!table_.empty()) std::fill(table_.begin(), table_.end(), Entry{});
    keys_.clear();
    ids_.clear();
    count_ = 0;
  }
  uint64_t owner_ = 0;
  std::vector<Entry> table_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t count_ = 0;
};

}  // namespace

struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Merge> heap;
  std::string piece;  // a character with prefix/suffix, or a "<0xNN>" probe
  WordCache cache;
};

namespace {
Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}
}  // namespace

// ---- BpeModel ---------------------------------------------------------------------------------

BpeModel::BpeModel(BpeConfig config) : config_(std::move(config)), instance_id_(g_next_instance++) {
  vocab_.reserve(config_.vocab.size());
  int32_t max_id = -1;
  for (const auto& [token, id] : config_.vocab) {
    if (id < 0) throw std::invalid_argument("vocab id " + std::to_string(id) + " is negative");
    vocab_.insert(token, id);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(size_t(max_id + 1), std::string());
  for (const auto& [token, id] : config_.vocab) id_to_token_[size_t(id)] = token;

  size_t cap = 16;
  while (cap < config_.merges.size() * 2 + 2) cap *= 2;
  merges_.assign(cap, PairSlot{});
  merge_mask_ = cap - 1;
  const size_t prefix_len = config_.continuing_subword_prefix.size();
  for (size_t rank = 0; rank < config_.merges.size(); ++rank) {
    const auto& [a, b] = config_.merges[rank];
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    if (!ia || !ib) {
      throw std::invalid_argument("merge \"" + a + " " + b + "\" (rank " + std::to_string(rank) +
                                  ") uses a token that is not in the vocabulary");
    }
    // As in tokenizers: the merged token drops the right part's continuing-subword prefix.
    std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : b);
    auto im = vocab_.find(merged);
    if (!im) {
      throw std::invalid_argument("merge \"" + a + " " + b + "\" makes \"" + merged +
                                  "\", which is not in the vocabulary");
    }
    // A repeated pair keeps its last rank, as a HashMap insert in tokenizers does.
    insert_merge(*ia, *ib, MergeValue{uint32_t(rank), *im});
  }
  if (config_.unk_token) {
    if (auto id = vocab_.find(*config_.unk_token)) unk_id_ = *id;
  }
  char probe[8];
  for (int b = 0; b < 256; ++b) {
    snprintf(probe, sizeof probe, "<0x%02X>", b);
    auto id = vocab_.find(probe);
    byte_ids_[b] = id ? *id : -1;
  }
}

void BpeModel::insert_merge(int32_t left, int32_t right, MergeValue value) {
  const uint64_t key = (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  size_t i = hash_bytes(reinterpret_cast<const char*>(&key), 8) & merge_mask_;
  while (merges_[i].key != ~0ull && merges_[i].key != key) i = (i + 1) & merge_mask_;
  merges_[i] = PairSlot{key, value};
}

const BpeModel::MergeValue* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  for (size_t i = hash_bytes(reinterpret_cast<const char*>(&key), 8) & merge_mask_;
       merges_[i].key != ~0ull; i = (i + 1) & merge_mask_) {
    if (merges_[i].key == key) return &merges_[i].value;
  }
  return nullptr;
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string kNone;
  return id >= 0 && size_t(id) < id_to_token_.size() ? id_to_token_[size_t(id)] : kNone;
}

// One symbol per character, as BPE::merge_word: prefix/suffix decoration, byte fallback to
// <0xNN> tokens, and unk tokens (fused when fuse_unk) for characters without a token.
void BpeModel::initial_symbols(std::string_view word, Scratch& s) const {
  auto& syms = s.symbols;
  syms.clear();
  auto add = [&](int32_t id, size_t len) {
    int32_t idx = int32_t(syms.size());
    syms.push_back(Symbol{id, idx - 1, -1, uint32_t(len)});
    if (idx > 0) syms[size_t(idx - 1)].next = idx;
  };
  const bool decorate = !config_.continuing_subword_prefix.empty() || !config_.end_of_word_suffix.empty();
  int32_t unk_pending = -1;  // unk id waiting to be added, so that fuse_unk can extend it
  size_t unk_len = 0;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
    std::string_view ch = word.substr(i, n);
    std::string_view key = ch;
    if (decorate) {
      s.piece.clear();
      if (i > 0) s.piece += config_.continuing_subword_prefix;
      s.piece.append(ch);
      if (i + n == word.size()) s.piece += config_.end_of_word_suffix;
      key = s.piece;
    }
    i += n;
    if (auto id = vocab_.find(key)) {
      if (unk_pending >= 0) add(unk_pending, unk_len);
      unk_pending = -1;
      add(*id, n);
      continue;
    }
    if (config_.byte_fallback) {
      bool all = true;
      for (char c : key) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {  // a pending unk stays pending here, exactly as in tokenizers
        for (char c : key) add(byte_ids_[static_cast<unsigned char>(c)], 1);
        continue;
      }
    }
    if (!config_.unk_token) continue;  // no unk token: the character is dropped
    if (unk_id_ < 0) {
      throw std::invalid_argument("unk_token \"" + *config_.unk_token + "\" is not in the vocabulary");
    }
    if (unk_pending >= 0 && config_.fuse_unk) {
      unk_len += n;
    } else {
      if (unk_pending >= 0) add(unk_pending, unk_len);
      unk_pending = unk_id_;
      unk_len = n;
    }
  }
  if (unk_pending >= 0) add(unk_pending, unk_len);
}

// Word::merge_all without dropout, including its handling of stale queue entries (an entry
// is applied when the pair now at its position merges into the same id), so that merge lists
// where one token has several merges (SentencePiece conversions) give the same result.
void BpeModel::merge_all(Scratch& s) const {
  auto& syms = s.symbols;
  auto& heap = s.heap;
  heap.clear();
  for (size_t i = 0; i + 1 < syms.size(); ++i) {
    if (const MergeValue* m = find_merge(syms[i].id, syms[i + 1].id)) {
      heap.push_back(Merge{m->rank, int32_t(i), m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), MergeAfter{});
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), MergeAfter{});
    const Merge top = heap.back();
    heap.pop_back();
    Symbol& cur = syms[size_t(top.pos)];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t right_pos = cur.next;
    const Symbol right = syms[size_t(right_pos)];
    const MergeValue* now = find_merge(cur.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;  // expired entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[size_t(right_pos)].len = 0;  // the right symbol is gone
    if (right.next >= 0) syms[size_t(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeValue* m = find_merge(syms[size_t(cur.prev)].id, cur.id)) {
        heap.push_back(Merge{m->rank, cur.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), MergeAfter{});
      }
    }
    if (cur.next >= 0) {
      if (const MergeValue* m = find_merge(cur.id, syms[size_t(cur.next)].id)) {
        heap.push_back(Merge{m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), MergeAfter{});
      }
    }
  }
}

void BpeModel::tokenize_uncached(std::string_view word, Scratch& s, std::vector<int32_t>& out) const {
  initial_symbols(word, s);
  merge_all(s);
  for (const Symbol& sym : s.symbols) {
    if (sym.len != 0) out.push_back(sym.id);
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (config_.ignore_merges) {
    if (auto id = vocab_.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  Scratch& s = thread_scratch();
  s.cache.bind(instance_id_);
  const uint64_t h = hash_bytes(word);
  if (s.cache.find(word, h, out)) return;
  const size_t before = out.size();
  tokenize_uncached(word, s, out);
  s.cache.insert(word, h, out.data() + before, out.size() - before);
}

}  // namespace ftune::data::tok
