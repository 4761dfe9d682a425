// libFuzzer target for how an input file becomes records (scripts/fuzz.sh jsonl): the first
// byte picks the compression (none, gzip, zstd), the input kind (.jsonl or .txt) and the
// format (text, instruction with or without a preset, chat with a built-in template); the rest
// is written to a file with that extension, read back line by line through LineReader (which
// decompresses), and each line rendered by DocumentRenderer and encoded with its loss mask by
// DocumentEncoder (a tiny byte-level tokenizer) as `ftune data tokenize` does. Bad records
// must come back as BadRecord (false), corrupt files as ftune::Errors naming the file;
// anything else (another exception, a sanitizer report) aborts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/pipeline/encode.h"
#include "data/pipeline/input.h"
#include "data/pipeline/render.h"
#include "data/tokenizer/tokenizer.h"
#include "tests/data/tiny_tokenizer.h"

namespace {

using namespace ftune::data;

const std::string& work_dir() {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::string d = std::string(t && *t ? t : "/tmp") + "/ftune-fuzz-jsonl-XXXXXX";
    if (!mkdtemp(d.data())) std::abort();
    return d;
  }();
  return dir;
}

TokenizeConfig config_for(uint8_t mode) {
  TokenizeConfig cfg;
  cfg.max_tokens = (mode & 0x80) ? 12 : 0;
  cfg.too_long = (mode & 0x40) ? "reject" : "truncate";
  switch ((mode >> 3) % 6) {
    case 0: cfg.format = "text"; break;
    case 1: cfg.format = "instruction"; break;
    case 2: cfg.format = "instruction", cfg.preset = "alpaca"; break;
    case 3: cfg.format = "chat", cfg.chat_template = "chatml"; break;
    case 4: cfg.format = "chat", cfg.chat_template = "llama2"; break;
    default: cfg.format = "chat", cfg.chat_template = "llama3", cfg.mask_prompt = false; break;
  }
  return cfg;
}

std::shared_ptr<const Tokenizer> tokenizer() {
  static const std::shared_ptr<const Tokenizer> tok = [] {
    const std::string path = work_dir() + "/tokenizer.json";  // TokenBytes reads the file again
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    const std::string json = tiny_byte_level(true).dump();
    std::fwrite(json.data(), 1, json.size(), f);
    std::fclose(f);
    return Tokenizer::load(path);
  }();
  return tok;
}

void check_encoded(const EncodedDocument& d, const TokenizeConfig& cfg, int32_t vocab) {
  if (!d.mask.empty() && d.mask.size() != d.ids.size()) std::abort();
  for (int32_t id : d.ids) {
    if (id < 0 || id >= vocab) std::abort();
  }
  if (cfg.max_tokens > 0 && static_cast<int64_t>(d.ids.size()) > cfg.max_tokens) std::abort();
}

// Every rendered span must lie inside the text, sorted and disjoint.
void check_rendered(const RenderedDocument& doc) {
  size_t last = 0;
  for (const auto& [b, e] : doc.trained) {
    if (b < last || e < b || e > doc.text.size()) std::abort();
    last = e;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  static const char* const kCompression[] = {"", ".gz", ".zst", ""};
  const std::string path = work_dir() + "/input" + ((mode & 4) ? ".txt" : ".jsonl") + kCompression[mode & 3];
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);

  // One renderer and encoder per configuration, built once: parsing the chat template and
  // loading the tokenizer are not what is fuzzed here.
  struct Stage {
    TokenizeConfig cfg;
    std::unique_ptr<DocumentRenderer> renderer;
    std::unique_ptr<DocumentEncoder> encoder;
  };
  static std::vector<Stage> stages(32);
  Stage& st = stages[mode >> 3];
  if (!st.renderer) {
    st.cfg = config_for(mode);
    st.renderer = std::make_unique<DocumentRenderer>(st.cfg, ChatTokens{"<|eot|>", "<|eot|>", ""});
    st.encoder = std::make_unique<DocumentEncoder>(tokenizer(), st.cfg);
  }
  RenderedDocument doc;
  EncodedDocument enc;
  try {
    LineReader reader(path);
    const InputKind kind = input_kind_of(path);
    for (std::string line; reader.next(line);) {
      BadRecord bad;
      if (!st.renderer->render(line, kind, doc, bad)) {
        if (bad.message.empty()) std::abort();  // a bad record says what is wrong
        continue;
      }
      check_rendered(doc);
      if (st.encoder->encode(doc, enc, bad)) {
        check_encoded(enc, st.cfg, tokenizer()->vocab_size());
      } else if (bad.message.empty()) {
        std::abort();
      }
    }
  } catch (const ftune::Error& e) {
    // Corrupt or truncated compressed data: the message names the file.
    if (std::string(e.what()).find(path) == std::string::npos) std::abort();
  }
  unlink(path.c_str());
  return 0;
}
