// RAII owners for the POSIX resources the checkpoint code holds: file descriptors and
// read-only mappings. Internal to runtime/checkpoint; no public header includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ftune::st::detail {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

// A read-only, private mapping of a whole file; unmapped on destruction. Move-only.
class Mapping {
 public:
  Mapping() = default;
  // Maps `size` bytes of fd; size 0 gives an empty mapping (mmap refuses zero lengths).
  Mapping(int fd, uint64_t size, const std::string& path);
  ~Mapping() { reset(); }
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  void reset();
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Opens path read-only; throws ftune::Error with strerror when that fails.
UniqueFd open_for_reading(const std::string& path);
// Size of the open file in bytes.
uint64_t file_size(int fd, const std::string& path);
// pread until `n` bytes arrived (retrying short reads and EINTR); throws ftune::Error naming
// `what` on an I/O error or an early end of file.
void pread_exact(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& what);
// write until all `n` bytes are out; throws ftune::Error naming `what` on failure.
void write_all(int fd, const void* src, uint64_t n, const std::string& what);

// Writes a file atomically: the data goes to a temporary file beside `path`, which is fsynced
// and renamed over `path` by commit(). Destroyed without commit(), it removes the temporary,
// so a crash or an exception never leaves a half-written file under the final name.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* src, uint64_t n) { write_all(fd_.get(), src, n, tmp_path_); }
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  UniqueFd fd_;
  bool committed_ = false;
};

}  // namespace ftune::st::detail
