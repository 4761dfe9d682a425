#include "runtime/train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace ftune::train {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Protobuf wire format, the few pieces an Event needs.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(v | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}

void key(std::string& out, int field, int wire_type) { varint(out, uint64_t(field) << 3 | uint64_t(wire_type)); }

template <class T>
void fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts, as protobuf's fixed types are
  out.append(b, sizeof(T));
}

void bytes_field(std::string& out, int field, const std::string& v) {
  key(out, field, 2);
  varint(out, v.size());
  out += v;
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
std::string event(double wall_time, int64_t step) {
  std::string e;
  key(e, 1, 1);
  fixed(e, wall_time);
  key(e, 2, 0);
  varint(e, uint64_t(step));
  return e;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(int64_t(now_s())) + "." + host;
  file_ = std::fopen(path_.c_str(), "ab");
  if (file_ == nullptr) throw Error("cannot create " + path_);
  std::string first = event(now_s(), 0);
  bytes_field(first, 3, "brain.Event:2");
  record(first);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::record(const std::string& payload) {
  std::string r;
  const uint64_t len = payload.size();
  fixed(r, len);
  fixed(r, masked(crc32c(reinterpret_cast<const uint8_t*>(r.data()), 8)));
  r += payload;
  fixed(r, masked(crc32c(reinterpret_cast<const uint8_t*>(payload.data()), payload.size())));
  if (std::fwrite(r.data(), 1, r.size(), file_) != r.size()) throw Error("cannot write " + path_);
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step) {
  // Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
  std::string v;
  bytes_field(v, 1, tag);
  key(v, 2, 5);
  fixed(v, float(value));
  std::string summary;
  bytes_field(summary, 1, v);
  std::string e = event(now_s(), step);
  bytes_field(e, 5, summary);
  record(e);
}

void TensorBoardWriter::flush() { std::fflush(file_); }

}  // namespace ftune::train
