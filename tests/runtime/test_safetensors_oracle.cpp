// ftune's safetensors against the Python reference (tests/oracle/safetensors_oracle.py): files
// Python writes read back with identical bytes, and files and sharded checkpoints ftune writes
// load in Python with identical values.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint/safetensors.h"
#include "tests/support/test_support.h"

namespace ftune::st {
namespace {

using ftune::test::read_file;
using ftune::test::run_oracle;
using ftune::test::shell_quote;
using ftune::test::TempDir;
using nlohmann::json;

std::string bytes_of(const SafetensorsFile& f, const TensorInfo& t) {
  return std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes());
}

// bf16 of a float whose low mantissa bits are zero (small integers): its upper half.
uint16_t bf16_of(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return static_cast<uint16_t>(bits >> 16);
}

// Tensors ftune writes for Python to check, with their raw bytes saved beside them.
class Expected {
 public:
  explicit Expected(std::string dir) : dir_(std::move(dir)) { std::filesystem::create_directories(dir_); }
  template <class T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    views_.push_back({name, dtype, std::move(shape), values.data()});
    ftune::test::write_file(dir_ + "/" + name + ".bin",
                            std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
    names_.push_back(name);
  }
  void finish(const std::map<std::string, std::string>& metadata) {
    ftune::test::write_file(dir_ + "/names.json", json(names_).dump());
    ftune::test::write_file(dir_ + "/metadata.json", json(metadata).dump());
  }
  const std::vector<TensorView>& views() const { return views_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<TensorView> views_;
  std::vector<std::string> names_;
};

TEST(SafetensorsOracle, ReadsFilesPythonWroteWithIdenticalBytes) {
  TempDir dir;
  const auto written = run_oracle("safetensors_oracle.py", "write " + shell_quote(dir.path()));
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const json manifest = json::parse(read_file(dir.file("manifest.json")));
  for (const auto& [file, spec] : manifest.items()) {
    SCOPED_TRACE(file);
    auto f = SafetensorsFile::open(dir.file(file));
    const auto want_metadata = spec["metadata"].get<std::map<std::string, std::string>>();
    EXPECT_EQ(f->metadata(), want_metadata);
    EXPECT_EQ(f->tensors().size(), spec["tensors"].size());
    for (const auto& [name, t] : spec["tensors"].items()) {
      const TensorInfo* info = f->find(name);
      ASSERT_NE(info, nullptr) << name;
      EXPECT_EQ(dtype_name(info->dtype), t["dtype"].get<std::string>()) << name;
      EXPECT_EQ(info->shape, t["shape"].get<std::vector<int64_t>>()) << name;
      const std::string want = read_file(dir.file(t["bytes"].get<std::string>()));
      EXPECT_EQ(bytes_of(*f, *info), want) << name;
      std::string sliced(info->nbytes(), '\0');
      f->read_range(*info, 0, info->nbytes(), sliced.data());
      EXPECT_EQ(sliced, want) << name << " via read_range";
    }
  }
}

TEST(SafetensorsOracle, PythonLoadsFilesFtuneWroteWithIdenticalValues) {
  TempDir dir;
  Expected e(dir.file("expect"));
  std::vector<float> ramp(15);
  std::iota(ramp.begin(), ramp.end(), 0.0f);
  for (float& x : ramp) x *= 0.25f;
  std::vector<uint16_t> ramp_bf16(16);
  for (size_t i = 0; i < ramp_bf16.size(); ++i) ramp_bf16[i] = bf16_of(static_cast<float>(i) - 8);
  std::vector<uint16_t> f16 = {0x3c00, 0xbc00, 0x7bff, 0x0001};  // 1, -1, max, smallest subnormal
  std::vector<int64_t> i64 = {-5, 1LL << 50};
  std::vector<uint8_t> mask = {1, 0, 0, 1};
  std::vector<double> f64 = {3.141592653589793};
  std::vector<float> none;
  e.add("ramp.f32", DType::F32, {3, 5}, ramp);
  e.add("ramp.bf16", DType::BF16, {4, 4}, ramp_bf16);
  e.add("f16", DType::F16, {2, 2}, f16);
  e.add("i64", DType::I64, {2}, i64);
  e.add("mask", DType::BOOL, {4}, mask);
  e.add("f64", DType::F64, {}, f64);
  e.add("empty", DType::F32, {0, 7}, none);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"ftune.step", "7"}};
  e.finish(metadata);
  write_file(dir.file("out.safetensors"), e.views(), metadata);
  const auto r = run_oracle("safetensors_oracle.py",
                            "check " + shell_quote(dir.file("out.safetensors")) + " " + shell_quote(e.dir()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK 7 tensors"), std::string::npos) << r.output;
}

TEST(SafetensorsOracle, PythonLoadsShardedCheckpointFtuneWrote) {
  TempDir dir;
  Expected e(dir.file("expect"));
  std::vector<std::vector<uint16_t>> layers(5, std::vector<uint16_t>(64));
  for (size_t l = 0; l < layers.size(); ++l) {
    for (size_t i = 0; i < 64; ++i) layers[l][i] = bf16_of(static_cast<float>(l * 64 + i) / 8);
    e.add("model.layers." + std::to_string(l) + ".mlp.down_proj.weight", DType::BF16, {8, 8}, layers[l]);
  }
  std::vector<float> ramp(40);
  std::iota(ramp.begin(), ramp.end(), 0.0f);
  for (float& x : ramp) x *= 0.25f;
  e.add("ramp.f32", DType::F32, {40}, ramp);
  e.finish({});
  write_checkpoint(dir.file("ckpt"), e.views(), 300);  // 128-byte layers: two per shard, the ramp joins the last
  const auto r = run_oracle("safetensors_oracle.py",
                            "check-sharded " + shell_quote(dir.file("ckpt")) + " " + shell_quote(e.dir()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("OK 6 tensors in 3 shards"), std::string::npos) << r.output;
}

TEST(SafetensorsOracle, OpensShardedCheckpointHuggingFaceWrote) {
  TempDir dir;
  const auto written = run_oracle("safetensors_oracle.py", "write-sharded " + shell_quote(dir.path()));
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const Checkpoint ck = Checkpoint::open(dir.path());
  ASSERT_EQ(ck.names().size(), 5u);
  std::set<std::string> files;
  for (const auto& name : ck.names()) {
    const SafetensorsFile& f = ck.file_of(name);
    files.insert(f.path());
    EXPECT_EQ(bytes_of(f, ck.info(name)), read_file(dir.file("expect/" + name + ".bin"))) << name;
  }
  EXPECT_GT(files.size(), 1u) << "the oracle was meant to write several shards";
}

}  // namespace
}  // namespace ftune::st
