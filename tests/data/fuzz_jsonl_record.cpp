// libFuzzer target for how an input file becomes records (scripts/fuzz.sh jsonl): the first
// byte picks the compression (none, gzip, zstd), the input kind (.jsonl or .txt) and the
// format (text, instruction with or without a preset, chat with a built-in template); the rest
// is written to a file with that extension, read back line by line through LineReader (which
// decompresses), and each line rendered by DocumentRenderer as `ftune data tokenize` does.
// Bad records must come back as BadRecord (render() == false), corrupt files as ftune::Errors
// naming the file; anything else (another exception, a sanitizer report) aborts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/pipeline/input.h"
#include "data/pipeline/render.h"

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

  // One renderer per format, built once: parsing the chat template is not what is fuzzed here.
  static std::vector<std::unique_ptr<DocumentRenderer>> renderers(6);
  auto& slot = renderers[(mode >> 3) % 6];
  if (!slot) slot = std::make_unique<DocumentRenderer>(config_for(mode), ChatTokens{"<s>", "</s>", ""});
  const DocumentRenderer& renderer = *slot;
  RenderedDocument doc;
  BadRecord bad;
  try {
    LineReader reader(path);
    const InputKind kind = input_kind_of(path);
    for (std::string line; reader.next(line);) {
      if (renderer.render(line, kind, doc, bad)) {
        check_rendered(doc);
      } else if (bad.message.empty()) {
        std::abort();  // a bad record says what is wrong
      }
    }
  } catch (const ftune::Error& e) {
    // Corrupt or truncated compressed data: the message names the file.
    if (std::string(e.what()).find(path) == std::string::npos) std::abort();
  }
  unlink(path.c_str());
  return 0;
}
