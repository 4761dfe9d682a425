#include "runtime/checkpoint/posix_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace ftune::st::detail {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int UniqueFd::release() { return std::exchange(fd_, -1); }

void UniqueFd::reset() {
  // close() errors on a read-only descriptor carry no information we could act on.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Mapping::Mapping(int fd, uint64_t size, const std::string& path) : size_(size) {
  if (size == 0) return;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) throw Error(path + ": cannot mmap " + std::to_string(size) + " bytes: " + errno_text());
  data_ = static_cast<const uint8_t*>(p);
}

Mapping::Mapping(Mapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void Mapping::reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

UniqueFd open_for_reading(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw Error(path + ": cannot open for reading: " + errno_text());
  return fd;
}

uint64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

void pread_exact(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& what) {
  auto* out = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(what + ": read failed at byte " + std::to_string(offset) + ": " + errno_text());
    if (got == 0) {
      throw Error(what + ": unexpected end of file at byte " + std::to_string(offset) +
                  " (file truncated after it was opened?)");
    }
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

void write_all(int fd, const void* src, uint64_t n, const std::string& what) {
  const auto* in = static_cast<const uint8_t*>(src);
  while (n > 0) {
    const ssize_t put = ::write(fd, in, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) throw Error(what + ": write failed: " + errno_text());
    in += put;
    n -= static_cast<uint64_t>(put);
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // Same directory as the target so that rename() stays on one file system and is atomic.
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = UniqueFd(::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd_) throw Error(tmp_path_ + ": cannot create: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    fd_.reset();
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFile::commit() {
  // fsync before rename: otherwise a crash can leave the new name pointing at missing data.
  if (::fsync(fd_.get()) != 0) throw Error(tmp_path_ + ": fsync failed: " + errno_text());
  if (::close(fd_.release()) != 0) throw Error(tmp_path_ + ": close failed: " + errno_text());
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw Error(path_ + ": cannot rename " + tmp_path_ + " into place: " + errno_text());
  }
  committed_ = true;
  // Persist the directory entry too; best effort, since some file systems refuse it.
  UniqueFd dir(::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

}  // namespace ftune::st::detail
