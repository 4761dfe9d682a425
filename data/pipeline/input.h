// Input files for `ftune data tokenize`: glob expansion, transparent gzip/zstd decompression
// (by extension) and line reading with line numbers for error messages.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace ftune::data {

enum class Compression { kNone, kGzip, kZstd };
enum class InputKind { kJsonl, kText };

// By extension: .gz -> gzip, .zst/.zstd -> zstd.
Compression compression_of(const std::string& path);
// .txt (before any compression suffix) is plain text; everything else is JSONL.
InputKind input_kind_of(const std::string& path);

// Expands each pattern with glob(3), sorted within a pattern, in the order given; a pattern
// that matches nothing or a directory is an ftune::Error naming it.
std::vector<std::string> expand_inputs(const std::vector<std::string>& patterns);

// Decompressed bytes of one file.
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Fills up to `cap` bytes; 0 at the end. Throws ftune::Error for corrupt data.
  virtual size_t read(char* out, size_t cap) = 0;
  // [bytes of the file on disk] consumed so far, for progress and ETA.
  virtual uint64_t file_bytes_read() const = 0;
};

std::unique_ptr<ByteStream> open_byte_stream(const std::string& path);

// The lines of an uncompressed file whose first byte lies in [begin, end): how a large file is
// cut into work items that tile it. A range whose begin falls inside a line (or inside a
// multi-byte UTF-8 character, which never holds a '\n' byte) starts at the next line start; the
// line running across `end` belongs to this range, so neighbours neither lose nor share a line.
struct LineRange {
  uint64_t begin = 0;           // [bytes]
  uint64_t end = UINT64_MAX;    // [bytes]
};

// [lines] in the uncompressed file before byte `offset` (a line start): the line number base
// of a range, for messages only.
int64_t count_lines_before(const std::string& path, uint64_t offset);

class LineReader {
 public:
  // A line longer than `max_line` bytes is an ftune::Error naming the file and line: a
  // corrupt or mislabelled file (a 10 GB run without "\n" compresses to kilobytes) must not
  // take all the memory.
  static constexpr size_t kMaxLine = size_t{1} << 30;  // [bytes]
  explicit LineReader(const std::string& path, size_t max_line = kMaxLine);
  // Only the lines of `range` (an uncompressed file); line numbers count from the range's
  // first line.
  LineReader(const std::string& path, LineRange range, size_t max_line = kMaxLine);
  // The next line without its "\n" or "\r\n"; false at the end of the file.
  bool next(std::string& line);
  // The rest of the file (the whole file when nothing was read yet).
  std::string read_all();
  int64_t line_number() const { return line_; }  // 1-based, of the last line returned
  uint64_t line_offset() const { return line_start_; }  // [decompressed bytes] where it starts
  uint64_t file_bytes_read() const { return stream_->file_bytes_read(); }
  const std::string& path() const { return path_; }

 private:
  bool fill();
  void skip_partial_line();

  std::string path_;
  std::unique_ptr<ByteStream> stream_;
  std::vector<char> buf_;
  size_t begin_ = 0, end_ = 0;  // unread bytes are buf_[begin_, end_)
  bool eof_ = false;
  int64_t line_ = 0;
  size_t max_line_;
  uint64_t end_limit_ = UINT64_MAX;  // [bytes] no line starting here or later is returned
  uint64_t offset_ = 0;              // [decompressed bytes] of buf_[0]
  uint64_t line_start_ = 0;
};

}  // namespace ftune::data
