// Every kind of bad safetensors file or checkpoint gets an ftune::Error that names the file,
// the tensor where there is one, and what is wrong. One test per case.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "runtime/checkpoint/safetensors.h"
#include "tests/runtime/st_test_util.h"

namespace ftune::st {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::write_raw;

class SafetensorsErrors : public ::testing::Test {
 protected:
  // Writes a hand-made file and returns the message opening it raises.
  std::string open_error(const std::string& header, const std::string& data) {
    write_raw(path_, header, data);
    return error_of([&] { SafetensorsFile::open(path_); });
  }
  ftune::test::TempDir dir_;
  std::string path_ = dir_.file("bad.safetensors");
};

TEST_F(SafetensorsErrors, MissingFile) {
  const std::string msg = error_of([&] { SafetensorsFile::open(dir_.file("nope.safetensors")); });
  EXPECT_THAT(msg, HasSubstr("nope.safetensors: cannot open for reading"));
}

TEST_F(SafetensorsErrors, FileShorterThanLengthPrefix) {
  ftune::test::write_file(path_, "abcde");
  const std::string msg = error_of([&] { SafetensorsFile::open(path_); });
  EXPECT_THAT(msg, HasSubstr(path_ + ": truncated: the file has 5 bytes"));
}

TEST_F(SafetensorsErrors, EmptyFile) {
  ftune::test::write_file(path_, "");
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(path_); }), HasSubstr("truncated: the file has 0 bytes"));
}

TEST_F(SafetensorsErrors, HeaderLengthLargerThanFile) {
  ftune::test::write_file(path_, testing::le64(1000) + "{}");
  const std::string msg = error_of([&] { SafetensorsFile::open(path_); });
  EXPECT_THAT(msg, HasSubstr(path_ + ": header length 1000 is larger than the file (2 bytes"));
}

TEST_F(SafetensorsErrors, HeaderLengthOverLimit) {
  // A sparse file just big enough that only the 100 MB limit can refuse the header.
  ftune::test::write_file(path_, testing::le64(kMaxHeaderBytes + 1));
  ASSERT_EQ(::truncate(path_.c_str(), 8 + kMaxHeaderBytes + 8), 0);
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(path_); }),
              HasSubstr("header length 100000001 exceeds the limit of 100000000 bytes"));
}

TEST_F(SafetensorsErrors, HeaderIsNotJson) {
  EXPECT_THAT(open_error("{\"a\": {\"dtype\": ", ""), HasSubstr(path_ + ": header is not valid JSON"));
}

TEST_F(SafetensorsErrors, HeaderIsNotAnObject) {
  EXPECT_THAT(open_error("[1, 2, 3]", ""), HasSubstr(path_ + ": header must be a JSON object, got array"));
}

TEST_F(SafetensorsErrors, HeaderNestedTooDeep) {
  const std::string deep = "{\"a\": " + std::string(50, '[') + std::string(50, ']') + "}";
  EXPECT_THAT(open_error(deep, ""), HasSubstr("nested deeper than 8 levels"));
}

TEST_F(SafetensorsErrors, TensorEntryMissingField) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd"),
              HasSubstr(path_ + ": tensor 'w': missing field 'data_offsets'"));
}

TEST_F(SafetensorsErrors, UnknownDtype) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}})", "a"),
              HasSubstr(path_ + ": tensor 'w': unknown dtype 'F7' (known: F64, F32, F16, BF16"));
}

TEST_F(SafetensorsErrors, NegativeShape) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "abcd"),
              HasSubstr("tensor 'w': shape entries must be non-negative integers, got -1"));
}

TEST_F(SafetensorsErrors, DtypeShapeSizeMismatch) {
  const std::string msg =
      open_error(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", std::string(20, 'x'));
  EXPECT_THAT(msg, HasSubstr(path_ + ": tensor 'w': dtype F32 and shape [2,3] need 24 bytes, but data_offsets "
                                     "[0,20] hold 20"));
}

TEST_F(SafetensorsErrors, OffsetsEndBeforeBegin) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", "abcd"),
              HasSubstr("tensor 'w': data_offsets [4,0] end before they begin"));
}

TEST_F(SafetensorsErrors, OffsetsNegative) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}})", "a"),
              HasSubstr("tensor 'w': data_offsets must be two non-negative integers"));
}

TEST_F(SafetensorsErrors, OffsetsOutOfRange) {
  const std::string msg = open_error(
      R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
          "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})", "abcdef");
  EXPECT_THAT(msg, HasSubstr(path_ + ": tensor 'b': data_offsets [4, 8) lie outside the data section of 6 bytes"));
}

TEST_F(SafetensorsErrors, TruncatedDataSection) {
  // A good file cut short, as an interrupted copy leaves it.
  std::vector<float> w(16, 1.0f);
  write_file(path_, {{"w", DType::F32, {16}, w.data()}});
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(ftune::test::read_file(path_).size() - 10)), 0);
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(path_); }),
              HasSubstr("tensor 'w': data_offsets [0, 64) lie outside the data section of 54 bytes (file truncated"));
}

TEST_F(SafetensorsErrors, OverlappingOffsets) {
  const std::string msg = open_error(
      R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
          "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})", "abcdef");
  EXPECT_THAT(msg, HasSubstr(path_ + ": tensor 'b': bytes [2, 6) overlap tensor 'a' at [0, 4)"));
}

TEST_F(SafetensorsErrors, GapBetweenTensors) {
  const std::string msg = open_error(
      R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
          "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}})", "abcdef");
  EXPECT_THAT(msg, HasSubstr(path_ + ": tensor 'b': gap in the data section: bytes [2, 4) before this tensor"));
}

TEST_F(SafetensorsErrors, TrailingBytesAfterLastTensor) {
  const std::string msg = open_error(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", "abcdef");
  EXPECT_THAT(msg, HasSubstr(path_ + ": data section has 4 bytes [2, 6) after the last tensor"));
}

TEST_F(SafetensorsErrors, MetadataValueNotString) {
  EXPECT_THAT(open_error(R"({"__metadata__": {"step": 5}})", ""),
              HasSubstr(path_ + ": __metadata__ value of 'step' must be a string, got number"));
}

TEST_F(SafetensorsErrors, ReadRangeOutsideTensor) {
  std::vector<float> w(4, 1.0f);
  write_file(path_, {{"w", DType::F32, {4}, w.data()}});
  auto f = SafetensorsFile::open(path_);
  float out[4];
  EXPECT_THAT(error_of([&] { f->read_range(*f->find("w"), 8, 12, out); }),
              HasSubstr("tensor 'w': byte range [8, 20) is outside the tensor's 16 bytes"));
}

TEST_F(SafetensorsErrors, ParseDtypeUnknown) {
  EXPECT_THAT(error_of([] { parse_dtype("float32"); }), HasSubstr("unknown safetensors dtype 'float32'"));
}

TEST_F(SafetensorsErrors, WriteDuplicateTensorName) {
  float x = 1;
  EXPECT_THAT(error_of([&] { write_file(path_, {{"x", DType::F32, {1}, &x}, {"x", DType::F32, {1}, &x}}); }),
              HasSubstr(path_ + ": tensor 'x' is given twice"));
  EXPECT_NE(::access(path_.c_str(), F_OK), 0) << "a refused write must leave no file";
}

TEST_F(SafetensorsErrors, WriteNegativeShape) {
  float x = 1;
  EXPECT_THAT(error_of([&] { write_file(path_, {{"x", DType::F32, {2, -1}, &x}}); }),
              HasSubstr(path_ + ": tensor 'x': negative dimension -1 in shape"));
}

TEST_F(SafetensorsErrors, WriteNullDataForNonEmptyTensor) {
  EXPECT_THAT(error_of([&] { write_file(path_, {{"x", DType::BF16, {3}, nullptr}}); }),
              HasSubstr(path_ + ": tensor 'x': data is null"));
}

// ---- checkpoint directories ---------------------------------------------------------------

class CheckpointErrors : public SafetensorsErrors {
 protected:
  void SetUp() override {
    write_checkpoint(dir_.path(), {{"a", DType::F32, {2}, two_}, {"b", DType::F32, {2}, two_}}, 8);
  }
  std::string index_ = dir_.file("model.safetensors.index.json");
  float two_[2] = {1, 2};
};

TEST_F(CheckpointErrors, NotACheckpointDirectory) {
  ftune::test::TempDir empty;
  EXPECT_THAT(error_of([&] { Checkpoint::open(empty.path()); }),
              HasSubstr(empty.path() + ": not a Hugging Face checkpoint: neither model.safetensors nor "
                                       "model.safetensors.index.json found"));
}

TEST_F(CheckpointErrors, ShardListedInIndexMissing) {
  ASSERT_EQ(::unlink(dir_.file("model-00002-of-00002.safetensors").c_str()), 0);
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }),
              HasSubstr(index_ + ": 1 shard file(s) listed in weight_map do not exist in " + dir_.path() +
                        ": model-00002-of-00002.safetensors"));
}

TEST_F(CheckpointErrors, IndexIsNotJson) {
  ftune::test::write_file(index_, "{\"weight_map\": ");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }), HasSubstr(index_ + ": not valid JSON"));
}

TEST_F(CheckpointErrors, IndexWithoutWeightMap) {
  ftune::test::write_file(index_, R"({"metadata": {"total_size": 16}})");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }), HasSubstr(index_ + ": expected an object with a \"weight_map\""));
}

TEST_F(CheckpointErrors, IndexShardEscapesDirectory) {
  ftune::test::write_file(index_, R"({"weight_map": {"a": "../elsewhere.safetensors"}})");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }),
              HasSubstr("weight_map entry 'a' names shard '../elsewhere.safetensors', which is not a file inside"));
}

TEST_F(CheckpointErrors, IndexPointsTensorToWrongShard) {
  ftune::test::write_file(index_, R"({"weight_map": {"a": "model-00002-of-00002.safetensors",
                                                     "b": "model-00002-of-00002.safetensors"}})");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }),
              HasSubstr(index_ + ": weight_map puts tensor 'a' in model-00002-of-00002.safetensors, but that file "
                                 "does not contain it"));
}

TEST_F(CheckpointErrors, CorruptShardNamesTheShard) {
  const std::string shard = dir_.file("model-00001-of-00002.safetensors");
  ftune::test::write_file(shard, "xx");
  EXPECT_THAT(error_of([&] { Checkpoint::open(dir_.path()); }), HasSubstr(shard + ": truncated"));
}

TEST_F(CheckpointErrors, RequireNamesEveryMissingTensor) {
  const Checkpoint ck = Checkpoint::open(dir_.path());
  const std::string msg = error_of([&] { ck.require({"a", "model.norm.weight", "b", "lm_head.weight", "x"}); });
  EXPECT_THAT(msg, HasSubstr(dir_.path() + ": checkpoint lacks 3 of 5 required tensors:\n"
                                           "  model.norm.weight\n  lm_head.weight\n  x"));
  EXPECT_NO_THROW(ck.require({"a", "b"}));
}

TEST_F(CheckpointErrors, WriteDuplicateNameAcrossShards) {
  // With a 4-byte limit each tensor gets its own shard, so only the checkpoint writer can see
  // that the name repeats; the index would otherwise silently keep one of them.
  ftune::test::TempDir out;
  EXPECT_THAT(error_of([&] {
                write_checkpoint(out.path(), {{"a", DType::F32, {1}, two_}, {"a", DType::F32, {1}, two_ + 1}}, 4);
              }),
              HasSubstr(out.path() + ": tensor 'a' is given twice"));
}

TEST_F(CheckpointErrors, InfoOfMissingTensorSuggestsClosest) {
  write_checkpoint(dir_.path(), {{"model.norm.weight", DType::F32, {2}, two_}});
  const Checkpoint ck = Checkpoint::open(dir_.path());
  EXPECT_THAT(error_of([&] { ck.info("model.norm.weigth"); }),
              HasSubstr("checkpoint has no tensor 'model.norm.weigth' (did you mean 'model.norm.weight'?)"));
}

}  // namespace
}  // namespace ftune::st
