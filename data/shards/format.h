// The names and numbers of the shard layout, in one place (data/FORMAT.md is the prose contract).
// Writer, reader, verifier, `ftune data inspect` and the h5py oracle all agree through these.
#pragma once

#include <cstdint>
#include <string>

namespace ftune::data::format {

// 2: sets written by `ftune data tokenize` in work items (shard-IIIIII-PPPP.h5, a shard closes
// at the end of each item, manifest.json beside the shards). Version 1 sets read unchanged.
constexpr int64_t kVersion = 2;  // bump on any incompatible layout change
constexpr int64_t kMinReadVersion = 1;  // the oldest version readers still accept
inline bool version_readable(int64_t v) { return v >= kMinReadVersion && v <= kVersion; }
std::string version_refusal(int64_t v);  // "format version 7, this ftune reads 1..2"

// Datasets at the root of every shard file.
constexpr const char* kTokens = "tokens";            // 1-D uint16 or uint32 [tokens]
constexpr const char* kDocOffsets = "doc_offsets";   // 1-D int64 [documents + 1]
constexpr const char* kLossMask = "loss_mask";       // 1-D uint8 [tokens], optional

// Attributes on the root group.
constexpr const char* kAttrFormatVersion = "format_version";
constexpr const char* kAttrTokenizerHash = "tokenizer_hash";
constexpr const char* kAttrVocabSize = "vocab_size";
constexpr const char* kAttrBosId = "bos_id";
constexpr const char* kAttrEosId = "eos_id";
constexpr const char* kAttrSourceFiles = "source_files";
constexpr const char* kAttrToolVersion = "tool_version";
constexpr const char* kAttrDocuments = "n_documents";
constexpr const char* kAttrTokens = "n_tokens";
constexpr const char* kAttrMaskedTokens = "n_masked_tokens";

constexpr const char* kIndexFile = "index.json";
constexpr const char* kIndexKind = "ftune-token-shards";

// 32 Ki tokens per chunk (64 KiB as uint16): a random 2048..8192-token window touches one or
// two chunks, while chunks stay large enough that sequential scans are not dominated by
// per-chunk overhead. No compression: random windows would pay a decompression of every chunk
// they touch, and token ids compress poorly anyway.
constexpr int64_t kChunkTokens = 32 * 1024;

// uint16 holds ids 0..65535, so vocabularies of up to 65536 entries fit.
constexpr int64_t kMaxUint16Vocab = 65536;
inline bool tokens_fit_uint16(int64_t vocab_size) { return vocab_size <= kMaxUint16Vocab; }

// "shard-00003.h5"; finished shards only ever carry this name.
std::string shard_file_name(int64_t index);
// "shard-000017-0002.h5": piece 2 of work item 17 (data tokenize); sorts in the set's order.
std::string item_shard_file_name(int64_t item, int64_t piece);
// The item of a name item_shard_file_name() made; -1 for any other name.
int64_t item_of_shard_file_name(const std::string& name);
// ".shard-00003.h5.tmp": hidden and with another suffix, so no glob for shards matches it.
std::string temp_file_name(const std::string& final_name);
bool is_shard_file_name(const std::string& name);

}  // namespace ftune::data::format
