// libFuzzer target for the tokenizer.json + tokenizer_config.json loader (scripts/fuzz.sh
// tokenizer). The input is tokenizer.json's bytes, then optionally a NUL byte and
// tokenizer_config.json's (JSON holds no raw NUL, so the split is unambiguous). An accepted
// tokenizer then encodes and decodes fixed texts so that the normalizer, pre-tokenizer, BPE
// model, added vocabulary, post-processor and decoder all run. Refusals must be ftune::Errors
// naming the file; anything else (another exception, a sanitizer report) aborts. An accepted
// tokenizer is also written to a file and loaded from there, so that TokenBytes (which reads
// the file again) and DocumentEncoder align a fixed document and build its loss mask.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include <cstdio>

#include "common/error.h"
#include "data/pipeline/encode.h"
#include "data/tokenizer/tokenizer.h"

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

void check_ids(const std::vector<int32_t>& ids, int32_t vocab_size) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) std::abort();  // encode must only produce ids it can decode
  }
}

void exercise(const ftune::data::Tokenizer& tok) {
  const int32_t n = tok.vocab_size();
  if (n <= 0) std::abort();
  // Byte-level and SentencePiece paths, added/special tokens, spaces, digits, many scripts.
  const std::string texts[] = {
      "Hello world! It's 2026.\n\n  indented\ttab",
      "\xC3\x9Cn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97 \xF0\x9F\x99\x82 e\xCC\x81",
      tok.bos_token() + "user: hi" + tok.eos_token() + "<|eot|><s></s>",
      "",
  };
  for (const std::string& text : texts) {
    for (bool special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = tok.encode(text, special);
      } catch (const ftune::Error&) {
        continue;  // bos/eos from the config may be invalid UTF-8
      }
      check_ids(ids, n);
      for (bool skip : {false, true}) (void)tok.decode(ids, skip);
    }
  }
  // Every id of a small vocabulary (a bounded number of a large one) decodes or is refused.
  std::vector<int32_t> all;
  for (int32_t id = 0; id < n && id < 512; ++id) all.push_back(id);
  for (int32_t id : all) {
    try {
      (void)tok.decode({id}, false);
      (void)tok.id_to_token(id);
    } catch (const ftune::Error&) {
    }
  }
  try {
    (void)tok.decode({n}, false);
    std::abort();  // one past the vocabulary must be refused
  } catch (const ftune::Error&) {
  }
  (void)tok.token_to_id(tok.bos_token());
}

void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// The data tool's use of a tokenizer: encode a rendered chat document with trained spans.
void exercise_encoder(const std::string& tokenizer_json, const std::string* config_json) {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::string d = std::string(t && *t ? t : "/tmp") + "/ftune-fuzz-tok-XXXXXX";
    if (!mkdtemp(d.data())) std::abort();
    return d;
  }();
  write_file(dir + "/tokenizer.json", tokenizer_json);
  if (config_json) write_file(dir + "/tokenizer_config.json", *config_json);
  else unlink((dir + "/tokenizer_config.json").c_str());
  std::shared_ptr<const ftune::data::Tokenizer> tok = ftune::data::Tokenizer::load(dir);  // accepted above
  ftune::data::TokenizeConfig cfg;
  cfg.format = "chat";
  cfg.max_tokens = 40;
  ftune::data::RenderedDocument doc;
  doc.text = "<s>USER: What is the capital?\nASSISTANT: Paris \xC3\xA9t\xC3\xA9.</s>";
  doc.all_trained = false;
  doc.trained = {{42, doc.text.size()}};
  ftune::data::EncodedDocument out;
  ftune::data::BadRecord bad;
  try {
    ftune::data::DocumentEncoder enc(tok, cfg);
    if (enc.encode(doc, out, bad)) {
      if (!out.mask.empty() && out.mask.size() != out.ids.size()) std::abort();
      if (out.ids.size() > 40) std::abort();
    }
  } catch (const ftune::Error&) {  // e.g. the unk token missing, as from encode() above
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* begin = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(begin, 0, size);
  const size_t split = nul ? static_cast<const char*>(nul) - begin : size;
  const std::string tokenizer_json(begin, split);
  std::string config_json;
  if (nul) config_json.assign(begin + split + 1, size - split - 1);
  std::shared_ptr<const ftune::data::Tokenizer> tok;
  try {
    tok = ftune::data::Tokenizer::from_json(tokenizer_json, nul ? &config_json : nullptr, "fuzz-input");
  } catch (const ftune::Error& e) {
    if (!starts_with(e.what(), "fuzz-input")) std::abort();  // refusals say which file
    return 0;
  }
  exercise(*tok);
  exercise_encoder(tokenizer_json, nul ? &config_json : nullptr);
  return 0;
}
