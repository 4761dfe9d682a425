// The BPE model of `tokenizers` (models/bpe): vocabulary, ranked merges, byte fallback,
// unk handling and ignore_merges, with a per-thread word cache for the encoder hot loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ftune::data::tok {

// Open-addressing string -> id map; lookups by string_view allocate nothing.
class StringIdMap {
 public:
  void reserve(size_t n);
  // Returns false (and keeps the old id) when `key` is already present.
  bool insert(std::string_view key, int32_t id);
  std::optional<int32_t> find(std::string_view key) const;
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0;  // into keys_
    uint32_t length = 0;  // [bytes]; 0 with id -1 marks an empty slot
    int32_t id = -1;
  };
  void grow();
  std::vector<Slot> slots_;
  std::string keys_;
  size_t size_ = 0;
};

struct BpeConfig {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // Throws std::invalid_argument naming the merge or token that is not in the vocabulary.
  explicit BpeModel(BpeConfig config);

  // Appends the ids of one pre-tokenized word to out. Thread-safe.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const { return vocab_.find(token); }
  // "" when id has no token in this model.
  const std::string& id_to_token(int32_t id) const;
  int32_t max_id() const { return int32_t(id_to_token_.size()) - 1; }

 private:
  struct MergeValue {
    uint32_t rank;
    int32_t new_id;
  };
  // Flat (left id, right id) -> merge table; the key packs both ids into 64 bits.
  struct PairSlot {
    uint64_t key = ~0ull;
    MergeValue value{};
  };
  const MergeValue* find_merge(int32_t left, int32_t right) const;
  void insert_merge(int32_t left, int32_t right, MergeValue value);
  void initial_symbols(std::string_view word, struct Scratch& scratch) const;
  void merge_all(struct Scratch& scratch) const;
  void tokenize_uncached(std::string_view word, struct Scratch& scratch,
                         std::vector<int32_t>& out) const;

  BpeConfig config_;
  StringIdMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<PairSlot> merges_;  // power-of-two size, linear probing
  uint64_t merge_mask_ = 0;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];  // id of "<0xNN>" or -1 (byte fallback)
  uint64_t instance_id_;   // keys the per-thread cache
};

}  // namespace ftune::data::tok
