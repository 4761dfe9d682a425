// Bad GGUF input through `ftune model import`: each case exits non-zero with a message that names
// the file, the key or tensor, and what is wrong.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/runtime/gguf_test_util.h"
#include "tests/support/test_support.h"

namespace ftune {
namespace {

using test::shell_quote;

class GgufErrors : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_.file(name); }
  // Writes `bytes` as NAME.gguf, imports it, and expects failure with every part in the message.
  void expect_refused(const std::string& name, const std::string& bytes, const std::vector<std::string>& parts) {
    test::write_file(path(name + ".gguf"), bytes);
    expect_refused_file(path(name + ".gguf"), parts);
  }
  void expect_refused_file(const std::string& file, const std::vector<std::string>& parts) {
    auto r = test::run_ftune("model import " + shell_quote(file) + " --out " + shell_quote(path("out")));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(file), std::string::npos) << "message does not name the file: " << r.output;
    for (const auto& p : parts) EXPECT_NE(r.output.find(p), std::string::npos) << "no '" << p << "' in: " << r.output;
    EXPECT_EQ(r.output.find("terminate"), std::string::npos) << r.output;  // an exception, not a crash
  }
  std::string tiny_bytes(const test::TinyGguf& t = {}) const {
    t.write(path("src.gguf"));
    return test::read_file(path("src.gguf"));
  }
  // Offset of the tensor info of `name`: the u64 length and name bytes, then n_dims, dims, type, offset.
  static size_t info_at(const std::string& bytes, const std::string& name) {
    std::string key(8, '\0');
    const uint64_t n = name.size();
    std::memcpy(key.data(), &n, 8);
    key += name;
    const size_t at = bytes.find(key);
    EXPECT_NE(at, std::string::npos) << name;
    return at + key.size();
  }
  static void patch_u64(std::string& bytes, size_t at, uint64_t v) { std::memcpy(bytes.data() + at, &v, 8); }
  static void patch_u32(std::string& bytes, size_t at, uint32_t v) { std::memcpy(bytes.data() + at, &v, 4); }
  // Field offsets inside a tensor info of a 1-D tensor (norms): n_dims u32, dim u64, type u32, offset u64.
  static size_t type_at_1d(const std::string& b, const std::string& n) { return info_at(b, n) + 4 + 8; }
  static size_t offset_at_1d(const std::string& b, const std::string& n) { return info_at(b, n) + 4 + 8 + 4; }

  test::TempDir dir_;
};

TEST_F(GgufErrors, BadMagic) {
  std::string b = tiny_bytes();
  b.replace(0, 4, "GGML");
  expect_refused("magic", b, {"not a GGUF file", "\"GGML\"", "starts with \"GGUF\""});
}

TEST_F(GgufErrors, UnsupportedVersion) {
  std::string b = tiny_bytes();
  patch_u32(b, 4, 1);
  expect_refused("v1", b, {"GGUF version 1 is not supported", "versions 2 and 3"});
}

TEST_F(GgufErrors, TruncatedHeader) {
  expect_refused("short", tiny_bytes().substr(0, 300), {"truncated header", "cut short"});
}

TEST_F(GgufErrors, TruncatedTensorData) {
  std::string b = tiny_bytes();
  expect_refused("cut", b.substr(0, b.size() - 100), {"output_norm.weight", "past its end", "truncated"});
}

TEST_F(GgufErrors, OffsetOutOfRange) {
  std::string b = tiny_bytes();
  patch_u64(b, offset_at_1d(b, "blk.0.attn_norm.weight"), uint64_t{1} << 40);
  expect_refused("range", b, {"tensor 'blk.0.attn_norm.weight'", "past its end"});
}

TEST_F(GgufErrors, OverlappingTensors) {
  std::string b = tiny_bytes();
  uint64_t first;
  std::memcpy(&first, b.data() + offset_at_1d(b, "blk.0.attn_norm.weight"), 8);
  patch_u64(b, offset_at_1d(b, "blk.0.ffn_norm.weight"), first);
  expect_refused("overlap", b, {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "overlap"});
}

TEST_F(GgufErrors, MisalignedOffset) {
  std::string b = tiny_bytes();
  uint64_t off;
  std::memcpy(&off, b.data() + offset_at_1d(b, "blk.0.ffn_norm.weight"), 8);
  patch_u64(b, offset_at_1d(b, "blk.0.ffn_norm.weight"), off + 4);
  expect_refused("align", b, {"blk.0.ffn_norm.weight", "not a multiple of the alignment 32"});
}

TEST_F(GgufErrors, UnknownQuantType) {
  std::string b = tiny_bytes();
  patch_u32(b, type_at_1d(b, "blk.1.attn_norm.weight"), 99);
  expect_refused("type99", b, {"tensor 'blk.1.attn_norm.weight'", "unknown ggml type id 99"});
}

TEST_F(GgufErrors, KnownButUnsupportedQuantType) {
  test::TinyGguf t;
  t.write(path("iq4.gguf"), [](gguf::MetadataOut&, std::vector<gguf::TensorOut>& ts) {
    for (auto& x : ts)
      if (x.name == "blk.0.attn_norm.weight") {  // 64 values: two IQ4_NL blocks of 18 bytes
        x.type = gguf::GgmlType::kIQ4_NL;
        x.nbytes = 36;
      }
  });
  expect_refused_file(path("iq4.gguf"), {"blk.0.attn_norm.weight", "type IQ4_NL", "Q4_K", "llama-quantize"});
}

TEST_F(GgufErrors, UnsupportedArchitecture) {
  test::TinyGguf t;
  t.architecture = "falcon";
  t.write(path("falcon.gguf"));
  expect_refused_file(path("falcon.gguf"), {"general.architecture 'falcon' is not supported", "llama"});
}

TEST_F(GgufErrors, MissingTokenizerMetadata) {
  test::TinyGguf t;
  t.with_tokenizer = false;
  t.write(path("notok.gguf"));
  expect_refused_file(path("notok.gguf"), {"'tokenizer.ggml.model' is missing", "no tokenizer"});
}

TEST_F(GgufErrors, UnknownTokenizerModelAndPreTokenizer) {
  test::TinyGguf t;
  t.tokenizer_model = "bert";
  t.write(path("bert.gguf"));
  expect_refused_file(path("bert.gguf"), {"tokenizer.ggml.model' is 'bert'", "gpt2", "llama"});
  test::TinyGguf p;
  p.pre = "qwen2";
  p.write(path("qwen2pre.gguf"));
  expect_refused_file(path("qwen2pre.gguf"), {"tokenizer.ggml.pre' is 'qwen2'", "llama-bpe"});
}

TEST_F(GgufErrors, ShapeNotMatchingConfig) {
  test::TinyGguf t;
  t.write(path("shape.gguf"), [](gguf::MetadataOut& md, std::vector<gguf::TensorOut>&) {
    for (auto& [key, v] : md.items)
      if (key == "llama.feed_forward_length") v.u = v.i = 128;
  });
  expect_refused_file(path("shape.gguf"), {"blk.0.ffn_gate.weight", "shape [96, 64]", "implies [128, 64]"});
}

TEST_F(GgufErrors, MissingTensor) {
  test::TinyGguf t;
  t.write(path("missing.gguf"), [](gguf::MetadataOut&, std::vector<gguf::TensorOut>& ts) {
    ts.erase(ts.begin() + 2);  // blk.0.attn_q.weight
  });
  expect_refused_file(path("missing.gguf"), {"missing tensors", "blk.0.attn_q.weight"});
}

}  // namespace
}  // namespace ftune
