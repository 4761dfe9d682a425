#include "data/shards/shard_writer.h"

#include "common/error.h"
#include "data/shards/format.h"
#include "data/shards/h5.h"
#include "data/shards/shard_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace ftune::data {

namespace fs = std::filesystem;

namespace {

// Tokens are appended to extensible datasets in blocks of this many, so memory stays bounded
// whatever the shard size. [tokens]
constexpr size_t kFlushTokens = 1 << 20;

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: the rename below still makes the shard appear atomically
  ::fsync(fd);
  ::close(fd);
}

h5::Handle create_extensible(hid_t file, const char* name, hid_t type) {
  hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = format::kChunkTokens;
  h5::Handle space = h5::wrap_space(H5Screate_simple(1, &zero, &unlimited), name);
  h5::Handle dcpl = h5::wrap_plist(H5Pcreate(H5P_DATASET_CREATE), name);
  h5::check(H5Pset_chunk(dcpl.get(), 1, &chunk), std::string("chunking ") + name);
  // Every element is written before the file is closed; filling chunks first is wasted work.
  h5::check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), std::string("fill time ") + name);
  h5::check(H5Pset_obj_track_times(dcpl.get(), false), std::string("timestamps ") + name);
  return h5::wrap_dataset(
      H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
      std::string("creating dataset ") + name);
}

void append(hid_t dataset, hid_t mem_type, int64_t old_size, const void* data, size_t n) {
  if (n == 0) return;
  hsize_t new_size = static_cast<hsize_t>(old_size) + n;
  h5::check(H5Dset_extent(dataset, &new_size), "extending a dataset");
  h5::Handle fspace = h5::wrap_space(H5Dget_space(dataset), "dataset space");
  hsize_t start = static_cast<hsize_t>(old_size), count = n;
  h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr),
            "selecting the appended range");
  h5::Handle mspace = h5::wrap_space(H5Screate_simple(1, &count, nullptr), "memory space");
  h5::check(H5Dwrite(dataset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data),
            "appending to a dataset");
}

// One shard being written under its temporary name.
class OpenShard {
 public:
  OpenShard(const std::string& dir, const std::string& name, const ShardSetInfo& info)
      : final_path_(dir + "/" + name),
        temp_path_(dir + "/" + format::temp_file_name(name)),
        info_(info) {
    std::lock_guard<std::mutex> lock(h5::mutex());
    file_ = h5::create_truncate(temp_path_);
    hid_t token_type = format::tokens_fit_uint16(info.vocab_size) ? H5T_STD_U16LE : H5T_STD_U32LE;
    tokens_ = create_extensible(file_.get(), format::kTokens, token_type);
    if (info.with_loss_mask) mask_ = create_extensible(file_.get(), format::kLossMask, H5T_STD_U8LE);
    offsets_.push_back(0);
  }

  ~OpenShard() {  // not finished: drop the partial file
    std::lock_guard<std::mutex> lock(h5::mutex());
    mask_.reset();
    tokens_.reset();
    file_.reset();
    std::remove(temp_path_.c_str());
  }

  // The caller has validated ids and mask. HDF5 narrows int32 to the file's uint16/uint32.
  void add(const int32_t* ids, size_t n, const uint8_t* mask) {
    pending_ids_.insert(pending_ids_.end(), ids, ids + n);
    if (mask_) {
      if (mask) pending_mask_.insert(pending_mask_.end(), mask, mask + n);
      else pending_mask_.resize(pending_mask_.size() + n, 1);
    }
    int64_t masked = 0;
    if (mask) {
      for (size_t i = 0; i < n; ++i) masked += mask[i] == 0;
    }
    masked_ += masked;
    offsets_.push_back(offsets_.back() + static_cast<int64_t>(n));
    if (pending_ids_.size() >= kFlushTokens) {
      std::lock_guard<std::mutex> lock(h5::mutex());
      flush();
    }
  }

  int64_t tokens() const { return offsets_.back(); }
  int64_t documents() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t masked() const { return masked_; }

  // Writes offsets and attributes, closes, fsyncs and renames into place.
  ShardIndexEntry finish() {
    {
      std::lock_guard<std::mutex> lock(h5::mutex());
      flush();
      write_offsets();
      write_attributes();
      mask_.reset();
      tokens_.reset();
      h5::check(file_.close(), "closing " + temp_path_);
    }
    fsync_path(temp_path_);
    if (std::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      throw Error("cannot rename " + temp_path_ + " to " + final_path_);
    }
    return {fs::path(final_path_).filename().string(), documents(), tokens(), masked_};
  }

 private:
  void flush() {
    int64_t written = tokens() - static_cast<int64_t>(pending_ids_.size());
    append(tokens_.get(), H5T_NATIVE_INT32, written, pending_ids_.data(), pending_ids_.size());
    if (mask_) append(mask_.get(), H5T_NATIVE_UINT8, written, pending_mask_.data(), pending_mask_.size());
    pending_ids_.clear();
    pending_mask_.clear();
  }

  void write_offsets() {
    hsize_t n = offsets_.size();
    h5::Handle space = h5::wrap_space(H5Screate_simple(1, &n, nullptr), "offsets space");
    h5::Handle dcpl = h5::wrap_plist(H5Pcreate(H5P_DATASET_CREATE), "doc_offsets");
    h5::check(H5Pset_obj_track_times(dcpl.get(), false), "timestamps doc_offsets");
    h5::Handle ds = h5::wrap_dataset(H5Dcreate2(file_.get(), format::kDocOffsets, H5T_STD_I64LE,
                                                space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                                     "creating dataset doc_offsets");
    h5::check(H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets_.data()),
              "writing doc_offsets");
  }

  void write_attributes() {
    hid_t root = file_.get();
    h5::write_attr(root, format::kAttrFormatVersion, format::kVersion);
    h5::write_attr(root, format::kAttrTokenizerHash, info_.tokenizer_hash);
    h5::write_attr(root, format::kAttrVocabSize, info_.vocab_size);
    h5::write_attr(root, format::kAttrBosId, info_.bos_id);
    h5::write_attr(root, format::kAttrEosId, info_.eos_id);
    h5::write_attr(root, format::kAttrSourceFiles, info_.source_files);
    h5::write_attr(root, format::kAttrToolVersion, info_.tool_version);
    h5::write_attr(root, format::kAttrDocuments, documents());
    h5::write_attr(root, format::kAttrTokens, tokens());
    h5::write_attr(root, format::kAttrMaskedTokens, masked_);
  }

  std::string final_path_, temp_path_;
  const ShardSetInfo& info_;
  h5::Handle file_, tokens_, mask_;
  std::vector<int64_t> offsets_;  // [documents + 1], in tokens
  std::vector<int32_t> pending_ids_;
  std::vector<uint8_t> pending_mask_;
  int64_t masked_ = 0;
};

}  // namespace

struct ShardSetWriter::Impl {
  std::string dir;
  ShardSetInfo info;
  int64_t tokens_per_shard = 0;
  ShardSetStats stats;
  std::vector<ShardIndexEntry> entries;
  std::unique_ptr<OpenShard> current;
  ShardSetWriter::ShardNamer name = format::shard_file_name;
  bool finished = false;

  void close_current() {
    if (!current) return;
    entries.push_back(current->finish());
    current.reset();
    stats.shards = static_cast<int64_t>(entries.size());
  }
};

namespace {
void validate_info(const ShardSetInfo& info, int64_t tokens_per_shard) {
  if (info.vocab_size <= 0 || info.vocab_size > (int64_t{1} << 31)) {
    throw Error("shard writer: vocab_size must be in 1..2^31, got " + std::to_string(info.vocab_size));
  }
  if (tokens_per_shard <= 0) {
    throw Error("shard writer: tokens per shard must be positive, got " +
                std::to_string(tokens_per_shard));
  }
  if (info.tokenizer_hash.empty()) throw Error("shard writer: the tokenizer hash is empty");
}

// Refuses to mix two sets in one directory; clears temporaries an interrupted writer left.
void prepare_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create shard directory " + dir + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name == format::kIndexFile || format::is_shard_file_name(name)) {
      throw Error("shard directory " + dir + " already holds a shard set (" + name +
                  "); choose an empty directory or remove the old set");
    }
    if (name.rfind(".shard-", 0) == 0) fs::remove(entry.path(), ec);
  }
}
}  // namespace

ShardSetWriter::ShardSetWriter(const std::string& dir, ShardSetInfo info, int64_t tokens_per_shard)
    : impl_(std::make_unique<Impl>()) {
  validate_info(info, tokens_per_shard);
  prepare_dir(dir);
  impl_->dir = dir;
  impl_->info = std::move(info);
  impl_->tokens_per_shard = tokens_per_shard;
}

ShardSetWriter::ShardSetWriter(const std::string& dir, ShardSetInfo info, int64_t tokens_per_shard, ShardNamer name)
    : impl_(std::make_unique<Impl>()) {
  validate_info(info, tokens_per_shard);
  impl_->dir = dir;
  impl_->info = std::move(info);
  impl_->tokens_per_shard = tokens_per_shard;
  impl_->name = std::move(name);
}

ShardSetWriter::~ShardSetWriter() = default;  // an unfinished OpenShard removes its temp file

void ShardSetWriter::add_document(const int32_t* ids, size_t n, const uint8_t* mask) {
  Impl& im = *impl_;
  if (im.finished) throw Error("shard writer: add_document after finish");
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= im.info.vocab_size) {
      throw Error("shard writer: token id " + std::to_string(ids[i]) + " at position " +
                  std::to_string(i) + " of document " + std::to_string(im.stats.documents) +
                  " is outside the vocabulary (size " + std::to_string(im.info.vocab_size) + ")");
    }
    if (mask && mask[i] > 1) {
      throw Error("shard writer: loss mask value " + std::to_string(mask[i]) + " in document " +
                  std::to_string(im.stats.documents) + " (must be 0 or 1)");
    }
  }
  if (mask && !im.info.with_loss_mask) {
    throw Error("shard writer: a loss mask was given but the set was created without one");
  }
  if (!im.current) {
    im.current = std::make_unique<OpenShard>(im.dir, im.name(static_cast<int64_t>(im.entries.size())), im.info);
  }
  int64_t masked_before = im.current->masked();
  im.current->add(ids, n, mask);
  im.stats.documents += 1;
  im.stats.tokens += static_cast<int64_t>(n);
  im.stats.masked_tokens += im.current->masked() - masked_before;
  // Documents never straddle shards: a shard closes after the document that fills it.
  if (im.current->tokens() >= im.tokens_per_shard) im.close_current();
}

ShardIndex make_shard_index(const ShardSetInfo& info, const std::vector<ShardIndexEntry>& shards) {
  ShardIndex ix;
  ix.format_version = format::kVersion;
  ix.tokenizer_hash = info.tokenizer_hash;
  ix.vocab_size = info.vocab_size;
  ix.bos_id = info.bos_id;
  ix.eos_id = info.eos_id;
  ix.token_dtype = format::tokens_fit_uint16(info.vocab_size) ? "uint16" : "uint32";
  ix.has_loss_mask = info.with_loss_mask;
  ix.tool_version = info.tool_version;
  for (const auto& e : shards) {
    ix.documents += e.documents;
    ix.tokens += e.tokens;
    ix.masked_tokens += e.masked_tokens;
  }
  ix.shards = shards;
  return ix;
}

ShardSetStats ShardSetWriter::finish() {
  Impl& im = *impl_;
  if (im.finished) return im.stats;
  im.close_current();
  make_shard_index(im.info, im.entries).write(im.dir);  // last: its presence marks the set complete
  im.finished = true;
  return im.stats;
}

std::vector<ShardIndexEntry> ShardSetWriter::close_part() {
  Impl& im = *impl_;
  if (!im.finished) im.close_current();
  im.finished = true;
  return im.entries;
}

void ShardSetWriter::discard_part() {
  Impl& im = *impl_;
  im.current.reset();  // removes its temporary file
  for (const auto& e : im.entries) std::remove((im.dir + "/" + e.file).c_str());
  im.entries.clear();
  im.finished = true;
}

const ShardSetStats& ShardSetWriter::stats() const { return impl_->stats; }

}  // namespace ftune::data
