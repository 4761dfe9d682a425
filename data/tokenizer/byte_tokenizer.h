// A built-in byte-level tokenizer: one token per byte (ids 0-255, spelled with GPT-2's
// byte-to-unicode table), <|begin_of_text|> = 256 added by the post-processor and
// <|end_of_text|> = 257. It needs no training data, so a fresh model made by `ftune model init
// --model.tokenizer byte` works with text out of the box (the demo), and the file it writes is a
// regular tokenizer.json that the `tokenizers` library reads the same way.
#pragma once

#include <string>

namespace ftune::data {

inline constexpr const char* kByteTokenizerName = "byte";  // the --model.tokenizer value
inline constexpr int kByteTokenizerVocab = 258;

std::string byte_tokenizer_json();         // the tokenizer.json text
std::string byte_tokenizer_config_json();  // tokenizer_config.json: which tokens are BOS and EOS

}  // namespace ftune::data
