#include "data/shards/shard_set.h"

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/h5.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <sstream>

namespace ftune::data {

namespace {

// Open shard files are capped so that sets of thousands of shards stay below the process's
// file-descriptor limit; reads reopen a closed shard on demand.
constexpr size_t kMaxOpenShards = 64;
// Per-dataset chunk cache: 32 chunks of 64 KiB (uint16), enough for the windows in flight.
constexpr size_t kChunkCacheBytes = 2u << 20;
constexpr size_t kChunkCacheSlots = 521;  // prime, per HDF5's advice

std::string token_dtype_of(hid_t dataset) {
  h5::Handle type = h5::wrap_type(H5Dget_type(dataset), "tokens type");
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_sign(type.get()) != H5T_SGN_NONE) {
    throw Error("dataset 'tokens' is not of unsigned integer type");
  }
  size_t size = H5Tget_size(type.get());
  if (size == 2) return "uint16";
  if (size == 4) return "uint32";
  throw Error("dataset 'tokens' has " + std::to_string(size) + "-byte elements (want 2 or 4)");
}

void read_attributes(hid_t root, ShardMeta& m) {
  m.format_version = h5::read_attr_int(root, format::kAttrFormatVersion);
  if (!format::version_readable(m.format_version)) throw Error(format::version_refusal(m.format_version));
  m.tokenizer_hash = h5::read_attr_string(root, format::kAttrTokenizerHash);
  m.vocab_size = h5::read_attr_int(root, format::kAttrVocabSize);
  if (m.vocab_size <= 0 || m.vocab_size > (int64_t{1} << 31)) {  // ids are handed out as int32
    throw Error("vocab_size " + std::to_string(m.vocab_size) + " is outside 1..2^31");
  }
  m.bos_id = h5::read_attr_int(root, format::kAttrBosId);
  m.eos_id = h5::read_attr_int(root, format::kAttrEosId);
  m.source_files = h5::read_attr_strings(root, format::kAttrSourceFiles);
  m.tool_version = h5::read_attr_string(root, format::kAttrToolVersion);
  m.documents = h5::read_attr_int(root, format::kAttrDocuments);
  m.tokens = h5::read_attr_int(root, format::kAttrTokens);
  m.masked_tokens = h5::read_attr_int(root, format::kAttrMaskedTokens);
}

void check_offsets(const ShardMeta& m) {
  const auto& off = m.doc_offsets;
  if (static_cast<int64_t>(off.size()) != m.documents + 1) {
    throw Error("doc_offsets has " + std::to_string(off.size()) + " entries, want n_documents + 1 = " +
                std::to_string(m.documents + 1));
  }
  if (off.front() != 0) throw Error("doc_offsets[0] is " + std::to_string(off.front()) + ", not 0");
  for (size_t i = 1; i < off.size(); ++i) {
    if (off[i] < off[i - 1]) {
      throw Error("doc_offsets decreases at document " + std::to_string(i - 1) + " (" +
                  std::to_string(off[i - 1]) + " -> " + std::to_string(off[i]) + ")");
    }
  }
  if (off.back() != m.tokens) {
    throw Error("doc_offsets ends at " + std::to_string(off.back()) + " but the shard holds " +
                std::to_string(m.tokens) + " tokens");
  }
}

ShardMeta read_meta_unlocked(const std::string& path) {
  ShardMeta m;
  m.path = path;
  m.file = std::filesystem::path(path).filename().string();
  h5::Handle file = h5::open_read_only(path);
  read_attributes(file.get(), m);
  h5::Handle tokens = h5::open_dataset(file.get(), format::kTokens);
  m.token_dtype = token_dtype_of(tokens.get());
  int64_t n_tokens = h5::dataset_length(tokens.get());
  if (n_tokens != m.tokens) {
    throw Error("dataset 'tokens' holds " + std::to_string(n_tokens) + " tokens, attribute n_tokens says " +
                std::to_string(m.tokens));
  }
  m.has_loss_mask = h5::check(H5Lexists(file.get(), format::kLossMask, H5P_DEFAULT), "loss_mask") > 0;
  if (m.has_loss_mask) {
    h5::Handle mask = h5::open_dataset(file.get(), format::kLossMask);
    if (h5::dataset_length(mask.get()) != n_tokens) throw Error("loss_mask and tokens differ in length");
  }
  h5::Handle offsets = h5::open_dataset(file.get(), format::kDocOffsets);
  m.doc_offsets.resize(static_cast<size_t>(h5::dataset_length(offsets.get())));
  h5::read_range(offsets.get(), H5T_NATIVE_INT64, 0, static_cast<int64_t>(m.doc_offsets.size()),
                 m.doc_offsets.data());
  check_offsets(m);
  return m;
}

}  // namespace

ShardMeta read_shard_meta(const std::string& path) {
  std::lock_guard<std::mutex> lock(h5::mutex());
  if (!std::filesystem::exists(path)) throw Error("shard " + path + " is missing");
  try {
    return read_meta_unlocked(path);
  } catch (const Error& e) {
    throw Error("shard " + path + ": " + e.what());
  }
}

std::string index_mismatch(const ShardMeta& m, const ShardIndexEntry& entry, const ShardIndex& ix) {
  auto vs = [](const std::string& what, auto a, auto b) {
    std::ostringstream os;
    os << what << " " << a << " in the shard, " << b << " in the index";
    return os.str();
  };
  if (m.documents != entry.documents) return vs("documents", m.documents, entry.documents);
  if (m.tokens != entry.tokens) return vs("tokens", m.tokens, entry.tokens);
  if (m.masked_tokens != entry.masked_tokens) return vs("masked tokens", m.masked_tokens, entry.masked_tokens);
  if (m.vocab_size != ix.vocab_size) return vs("vocab_size", m.vocab_size, ix.vocab_size);
  if (m.bos_id != ix.bos_id || m.eos_id != ix.eos_id) return "BOS/EOS ids differ";
  if (m.token_dtype != ix.token_dtype) return vs("token dtype", m.token_dtype, ix.token_dtype);
  if (m.has_loss_mask != ix.has_loss_mask) return "loss mask present in one, absent in the other";
  return "";
}

struct ShardSet::Impl {
  struct OpenFile {
    h5::Handle file, tokens, mask;
  };
  std::string dir;
  ShardIndex index;
  std::vector<ShardMeta> shards;
  std::vector<int64_t> first_doc;  // [shards + 1] global index of each shard's first document
  mutable std::vector<OpenFile> open_files;  // parallel to shards; guarded by h5::mutex()
  mutable std::vector<int64_t> open_order;   // shards with open files, oldest first

  OpenFile& ensure_open(int64_t s) const {
    OpenFile& f = open_files[static_cast<size_t>(s)];
    if (f.file) return f;
    if (open_order.size() >= kMaxOpenShards) {
      open_files[static_cast<size_t>(open_order.front())] = OpenFile{};
      open_order.erase(open_order.begin());
    }
    const ShardMeta& m = shards[static_cast<size_t>(s)];
    try {
      f.file = h5::open_read_only(m.path);
      h5::Handle dapl = h5::wrap_plist(H5Pcreate(H5P_DATASET_ACCESS), "dataset access list");
      h5::check(H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kChunkCacheBytes, 1.0), "chunk cache");
      f.tokens = h5::wrap_dataset(H5Dopen2(f.file.get(), format::kTokens, dapl.get()), "opening tokens");
      if (m.has_loss_mask) {
        f.mask = h5::wrap_dataset(H5Dopen2(f.file.get(), format::kLossMask, dapl.get()), "opening loss_mask");
      }
    } catch (const Error& e) {
      f = OpenFile{};
      throw Error("shard " + m.path + ": " + e.what());
    }
    open_order.push_back(s);
    return f;
  }
};

namespace {

void check_tokenizer(const ShardMeta& m, const std::string& want, const std::string& want_source) {
  if (m.tokenizer_hash != want) {
    throw Error("shard " + m.path + " was written with tokenizer " + m.tokenizer_hash + ", but " +
                want_source + " is " + want +
                ": these tokens would be read as other words. Re-tokenize the corpus with this "
                "tokenizer, or point the run at shards made with it");
  }
}

}  // namespace

std::shared_ptr<const ShardSet> ShardSet::open(const std::string& dir,
                                               const std::optional<std::string>& expected_tokenizer_hash) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->index = ShardIndex::read(dir);
  const ShardIndex& ix = impl->index;
  std::string index_path = dir + "/" + format::kIndexFile;
  if (!format::version_readable(ix.format_version)) {
    throw Error(index_path + ": " + format::version_refusal(ix.format_version));
  }
  std::string want_hash = expected_tokenizer_hash.value_or(ix.tokenizer_hash);
  std::string want_source = expected_tokenizer_hash ? "the run's tokenizer" : "index.json's tokenizer";
  impl->first_doc.push_back(0);
  for (const auto& entry : ix.shards) {
    ShardMeta m = read_shard_meta(dir + "/" + entry.file);
    check_tokenizer(m, want_hash, want_source);
    std::string mismatch = index_mismatch(m, entry, ix);
    if (!mismatch.empty()) {
      throw Error("shard " + m.path + " does not match " + index_path + ": " + mismatch +
                  " (the set was changed after it was written; re-create it)");
    }
    impl->first_doc.push_back(impl->first_doc.back() + m.documents);
    impl->shards.push_back(std::move(m));
  }
  if (ix.tokenizer_hash != want_hash) {
    throw Error(index_path + " names tokenizer " + ix.tokenizer_hash + " but its shards and " +
                want_source + " are " + want_hash + " (the index was replaced; re-create the set)");
  }
  if (impl->first_doc.back() != ix.documents) {
    throw Error(index_path + ": total documents " + std::to_string(ix.documents) +
                " differ from the sum over its shards " + std::to_string(impl->first_doc.back()));
  }
  impl->open_files.resize(impl->shards.size());
  return std::shared_ptr<const ShardSet>(new ShardSet(std::move(impl)));
}

ShardSet::ShardSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ShardSet::~ShardSet() {
  std::lock_guard<std::mutex> lock(h5::mutex());
  impl_->open_files.clear();
}

const std::string& ShardSet::dir() const { return impl_->dir; }
const ShardIndex& ShardSet::index() const { return impl_->index; }
int64_t ShardSet::shard_count() const { return static_cast<int64_t>(impl_->shards.size()); }
const ShardMeta& ShardSet::shard(int64_t i) const { return impl_->shards.at(static_cast<size_t>(i)); }
int64_t ShardSet::documents() const { return impl_->first_doc.back(); }
int64_t ShardSet::tokens() const { return impl_->index.tokens; }
bool ShardSet::has_loss_mask() const { return impl_->index.has_loss_mask; }

ShardSet::DocRef ShardSet::document(int64_t global_doc) const {
  const auto& first = impl_->first_doc;
  FTUNE_CHECK(global_doc >= 0 && global_doc < first.back(), "document index out of range");
  // The last shard whose first document is <= global_doc (empty shards do not exist).
  auto it = std::upper_bound(first.begin(), first.end(), global_doc) - 1;
  auto s = static_cast<int64_t>(it - first.begin());
  const auto& off = impl_->shards[static_cast<size_t>(s)].doc_offsets;
  auto local = static_cast<size_t>(global_doc - *it);
  return {s, off[local], off[local + 1] - off[local]};
}

void ShardSet::read_tokens(int64_t shard, int64_t begin, int64_t count, int32_t* out) const {
  std::lock_guard<std::mutex> lock(h5::mutex());
  Impl::OpenFile& f = impl_->ensure_open(shard);
  const ShardMeta& m = impl_->shards[static_cast<size_t>(shard)];
  // Read in the file's own type: letting HDF5 convert costs a calloc'd 1 MiB conversion buffer
  // per call, which dominated small window reads. Ids are < vocab_size <= 2^31, so uint32 and
  // int32 share their bit patterns.
  try {
    if (m.token_dtype == "uint16") {
      thread_local std::vector<uint16_t> narrow;
      narrow.resize(static_cast<size_t>(count));
      h5::read_range(f.tokens.get(), H5T_NATIVE_UINT16, begin, count, narrow.data());
      std::copy(narrow.begin(), narrow.end(), out);
    } else {
      h5::read_range(f.tokens.get(), H5T_NATIVE_UINT32, begin, count, out);
    }
  } catch (const Error& e) {
    throw Error("shard " + impl_->shards[static_cast<size_t>(shard)].path + ": tokens: " + e.what());
  }
}

void ShardSet::read_mask(int64_t shard, int64_t begin, int64_t count, uint8_t* out) const {
  if (!impl_->index.has_loss_mask) {
    std::fill(out, out + count, uint8_t{1});
    return;
  }
  std::lock_guard<std::mutex> lock(h5::mutex());
  Impl::OpenFile& f = impl_->ensure_open(shard);
  try {
    h5::read_range(f.mask.get(), H5T_NATIVE_UINT8, begin, count, out);
  } catch (const Error& e) {
    throw Error("shard " + impl_->shards[static_cast<size_t>(shard)].path + ": loss_mask: " + e.what());
  }
}

}  // namespace ftune::data
