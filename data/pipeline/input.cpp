#include "data/pipeline/input.h"

#include <glob.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace ftune::data {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

constexpr size_t kChunk = 1 << 20;  // [bytes] read from disk at a time

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

FilePtr open_file(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) throw Error("cannot open input file " + path + ": " + std::strerror(errno));
  return f;
}

// Reads the compressed file in chunks; the decoders below pull from it.
class RawFile {
 public:
  explicit RawFile(const std::string& path, uint64_t start = 0) : buf_(kChunk), path_(path), file_(open_file(path)) {
    if (start > 0 && fseeko(file_.get(), static_cast<off_t>(start), SEEK_SET) != 0) {
      throw Error("cannot seek to byte " + std::to_string(start) + " of " + path + ": " + std::strerror(errno));
    }
  }
  // Refills when empty; false at the end of the file.
  bool fill() {
    if (pos_ < len_) return true;
    len_ = std::fread(buf_.data(), 1, buf_.size(), file_.get());
    pos_ = 0;
    if (len_ == 0 && std::ferror(file_.get())) throw Error("cannot read " + path_ + ": " + std::strerror(errno));
    consumed_ += len_;
    return len_ > 0;
  }
  const std::string& path() const { return path_; }
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  uint64_t consumed_ = 0;

 private:
  std::string path_;
  FilePtr file_;
};

class PlainStream : public ByteStream {
 public:
  explicit PlainStream(const std::string& path, uint64_t start = 0) : raw_(path, start) {}
  size_t read(char* out, size_t cap) override {
    if (!raw_.fill()) return 0;
    size_t n = std::min(cap, raw_.len_ - raw_.pos_);
    std::memcpy(out, raw_.buf_.data() + raw_.pos_, n);
    raw_.pos_ += n;
    return n;
  }
  uint64_t file_bytes_read() const override { return raw_.consumed_; }

 private:
  RawFile raw_;
};

class GzipStream : public ByteStream {
 public:
  explicit GzipStream(const std::string& path) : raw_(path) {
    std::memset(&z_, 0, sizeof(z_));
    if (inflateInit2(&z_, 15 + 32) != Z_OK) throw Error("zlib: cannot initialise for " + path);  // 32: gzip or zlib header
  }
  ~GzipStream() override { inflateEnd(&z_); }
  size_t read(char* out, size_t cap) override {
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(cap);
    while (z_.avail_out == cap) {
      if (!raw_.fill()) {
        if (in_member_) throw Error(raw_.path() + ": truncated gzip data (file ends inside a member)");
        break;
      }
      z_.next_in = reinterpret_cast<Bytef*>(raw_.buf_.data() + raw_.pos_);
      z_.avail_in = static_cast<uInt>(raw_.len_ - raw_.pos_);
      in_member_ = true;
      int rc = inflate(&z_, Z_NO_FLUSH);
      raw_.pos_ = raw_.len_ - z_.avail_in;
      if (rc == Z_STREAM_END) {  // concatenated members (pigz, `cat a.gz b.gz`) continue
        in_member_ = false;
        inflateReset(&z_);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw Error(raw_.path() + ": corrupt gzip data (" + (z_.msg ? z_.msg : "zlib error") + ")");
      }
    }
    return cap - z_.avail_out;
  }
  uint64_t file_bytes_read() const override { return raw_.consumed_; }

 private:
  RawFile raw_;
  z_stream z_;
  bool in_member_ = false;
};

class ZstdStream : public ByteStream {
 public:
  explicit ZstdStream(const std::string& path) : raw_(path), ctx_(ZSTD_createDStream()) {
    if (!ctx_) throw Error("zstd: cannot initialise for " + path);
  }
  ~ZstdStream() override { ZSTD_freeDStream(ctx_); }
  size_t read(char* out, size_t cap) override {
    ZSTD_outBuffer o{out, cap, 0};
    while (o.pos == 0) {
      if (!raw_.fill()) {
        if (in_frame_) throw Error(raw_.path() + ": truncated zstd data (file ends inside a frame)");
        break;
      }
      ZSTD_inBuffer in{raw_.buf_.data() + raw_.pos_, raw_.len_ - raw_.pos_, 0};
      size_t rc = ZSTD_decompressStream(ctx_, &o, &in);
      raw_.pos_ += in.pos;
      if (ZSTD_isError(rc)) throw Error(raw_.path() + ": corrupt zstd data (" + ZSTD_getErrorName(rc) + ")");
      in_frame_ = rc != 0;  // 0: a frame just ended
    }
    return o.pos;
  }
  uint64_t file_bytes_read() const override { return raw_.consumed_; }

 private:
  RawFile raw_;
  ZSTD_DStream* ctx_;
  bool in_frame_ = false;
};

}  // namespace

Compression compression_of(const std::string& path) {
  if (ends_with(path, ".gz")) return Compression::kGzip;
  if (ends_with(path, ".zst") || ends_with(path, ".zstd")) return Compression::kZstd;
  return Compression::kNone;
}

InputKind input_kind_of(const std::string& path) {
  std::string p = path;
  for (const char* ext : {".gz", ".zst", ".zstd"}) {
    if (ends_with(p, ext)) p.resize(p.size() - std::strlen(ext));
  }
  return ends_with(p, ".txt") ? InputKind::kText : InputKind::kJsonl;
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const auto& pattern : patterns) {
    glob_t g{};
    int rc = glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + (rc == 0 ? g.gl_pathc : 0));
    globfree(&g);
    if (matches.empty()) throw Error("input '" + pattern + "' matches no file");
    std::sort(matches.begin(), matches.end());
    for (auto& m : matches) {
      struct stat st {};
      if (stat(m.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw Error("input '" + m + "' is not a regular file");
      out.push_back(std::move(m));
    }
  }
  return out;
}

std::unique_ptr<ByteStream> open_byte_stream(const std::string& path) {
  switch (compression_of(path)) {
    case Compression::kGzip: return std::make_unique<GzipStream>(path);
    case Compression::kZstd: return std::make_unique<ZstdStream>(path);
    case Compression::kNone: break;
  }
  return std::make_unique<PlainStream>(path);
}

LineReader::LineReader(const std::string& path, size_t max_line)
    : path_(path), stream_(open_byte_stream(path)), buf_(kChunk), max_line_(max_line) {}

LineReader::LineReader(const std::string& path, LineRange range, size_t max_line)
    : path_(path), buf_(kChunk), max_line_(max_line), end_limit_(range.end) {
  if (compression_of(path) != Compression::kNone && (range.begin > 0 || range.end != UINT64_MAX)) {
    throw Error(path + ": a compressed file is read whole, not by byte range");
  }
  // From the byte before `begin`: when it is a '\n', `begin` is itself a line start.
  offset_ = range.begin > 0 ? range.begin - 1 : 0;
  stream_ = std::make_unique<PlainStream>(path, offset_);
  if (range.begin > 0) skip_partial_line();
}

void LineReader::skip_partial_line() {
  while (true) {
    const void* nl = std::memchr(buf_.data() + begin_, '\n', end_ - begin_);
    if (nl) {
      begin_ = static_cast<size_t>(static_cast<const char*>(nl) - buf_.data()) + 1;
      return;
    }
    begin_ = end_;  // a partial line can be long: drop it as it goes, the buffer never grows
    if (!fill()) return;
  }
}

int64_t count_lines_before(const std::string& path, uint64_t offset) {
  FilePtr f = open_file(path);
  std::vector<char> buf(kChunk);
  int64_t lines = 0;
  for (uint64_t done = 0; done < offset;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), offset - done));
    size_t n = std::fread(buf.data(), 1, want, f.get());
    if (n == 0) break;
    lines += std::count(buf.data(), buf.data() + n, '\n');
    done += n;
  }
  return lines;
}

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {  // keep the partial line at the front
    offset_ += begin_;
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ - begin_ > max_line_) {
    throw Error(path_ + ":" + std::to_string(line_ + 1) + ": a line longer than " + std::to_string(max_line_) +
                " bytes; JSONL holds one record per line (for one document per .txt file, use txt_mode = \"file\")");
  }
  if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);  // a line longer than the buffer
  size_t n = stream_->read(buf_.data() + end_, buf_.size() - end_);
  if (n == 0) eof_ = true;
  end_ += n;
  return n > 0;
}

bool LineReader::next(std::string& line) {
  if (offset_ + begin_ >= end_limit_) return false;  // the next line belongs to the next range
  line_start_ = offset_ + begin_;
  size_t scanned = begin_;
  while (true) {
    const char* start = buf_.data() + scanned;
    const void* nl = std::memchr(start, '\n', end_ - scanned);
    if (nl) {
      size_t at = static_cast<const char*>(nl) - buf_.data();
      size_t stop = (at > begin_ && buf_[at - 1] == '\r') ? at - 1 : at;
      line.assign(buf_.data() + begin_, stop - begin_);
      begin_ = at + 1;
      ++line_;
      return true;
    }
    size_t scanned_rel = end_ - begin_;
    if (!fill()) break;
    scanned = begin_ + scanned_rel;
  }
  if (begin_ == end_) return false;
  line.assign(buf_.data() + begin_, end_ - begin_);  // the last line has no newline
  if (!line.empty() && line.back() == '\r') line.pop_back();
  begin_ = end_;
  ++line_;
  return true;
}

std::string LineReader::read_all() {
  std::string out(buf_.data() + begin_, end_ - begin_);
  begin_ = end_ = 0;
  char chunk[1 << 16];
  for (size_t n; (n = stream_->read(chunk, sizeof(chunk))) > 0;) out.append(chunk, n);
  eof_ = true;
  return out;
}

}  // namespace ftune::data
