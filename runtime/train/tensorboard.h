// TensorBoard event files written without TensorFlow or protobuf: the TFRecord framing
// (length, masked CRC-32C, payload, masked CRC-32C) around hand-encoded Event protos carrying
// scalar summaries. Enough for TensorBoard's scalar dashboard.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace ftune::train {

class TensorBoardWriter {
 public:
  // Creates dir and an events.out.tfevents.<time>.<host> file in it.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void scalar(const std::string& tag, double value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& payload);
  std::string path_;
  std::FILE* file_ = nullptr;
};

uint32_t crc32c(const uint8_t* data, size_t n);  // Castagnoli, as TFRecord uses

}  // namespace ftune::train
