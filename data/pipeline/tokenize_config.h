// Configuration of `ftune data tokenize` ([tokenize] in TOML, --tokenize.<key> on the CLI).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::data {

struct TokenizeConfig {
  std::vector<std::string> inputs;  // files or globs
  std::string output;
  std::string tokenizer;
  std::string format = "text";
  std::string text_field = "text";
  std::string txt_mode = "line";
  std::string preset;
  std::string prompt_field = "prompt";
  std::string input_field;
  std::string response_field = "response";
  std::string instruction_template = "USER: {prompt}\nASSISTANT: {response}";
  std::string messages_field = "messages";
  std::string chat_template;
  bool mask_prompt = true;
  bool append_eos = true;
  int64_t max_tokens = 0;  // [tokens]; 0: no limit
  std::string too_long = "truncate";
  std::string on_error = "fail";
  int64_t threads = 0;  // [encoder threads]; 0: one per core
  int64_t tokens_per_shard = 100'000'000;
  bool progress = false;
  int64_t max_messages = 20;
  bool resume = false;
  int64_t item_bytes = int64_t{128} << 20;  // [bytes]

  template <class F>
  void fields(F&& f) {
    f("inputs", inputs, "input files or globs: .jsonl or .txt, optionally .gz or .zst compressed");
    f("output", output, "directory for the token shards");
    f("tokenizer", tokenizer, "tokenizer.json or the directory holding it");
    f("format", format, "text | instruction | chat");
    f("text_field", text_field, "format=text: the JSONL field holding the document");
    f("txt_mode", txt_mode, ".txt inputs: line (one document per line) | file (one per file)");
    f("preset", preset, "format=instruction: qa (question/answer) | alpaca (instruction/input/output) | empty: the *_field keys");
    f("prompt_field", prompt_field, "format=instruction: the prompt field");
    f("input_field", input_field, "format=instruction: optional field appended to the prompt after a blank line");
    f("response_field", response_field, "format=instruction: the response field");
    f("instruction_template", instruction_template, "format=instruction: text around {prompt} and {response}");
    f("messages_field", messages_field, "format=chat: the list of {role, content} messages");
    f("chat_template", chat_template, "format=chat: empty (the tokenizer's), chatml, llama3, llama2 or a .jinja file");
    f("mask_prompt", mask_prompt, "train only on responses/assistant turns (instruction, chat)");
    f("append_eos", append_eos, "end text and instruction documents with EOS (chat: the template decides)");
    f("max_tokens", max_tokens, "longest document in tokens; 0: no limit");
    f("too_long", too_long, "documents over max_tokens: truncate | reject (a bad line, see on_error)");
    f("on_error", on_error, "bad input lines: fail (stop, exit non-zero) | skip (count and go on)");
    f("threads", threads, "encoder threads; 0: one per core");
    f("tokens_per_shard", tokens_per_shard, "tokens in each shard file");
    f("progress", progress, "show the progress bar even when stderr is not a terminal");
    f("max_messages", max_messages, "print at most this many skipped-line messages");
    f("resume", resume, "continue an interrupted run in the output directory from its manifest (any rank count)");
    f("item_bytes", item_bytes, "uncompressed inputs larger than this are split into line-aligned ranges of about this many bytes, the unit of work of a rank and of --resume");
  }
};

// Checks values and combinations; throws ftune::Error naming the key and the accepted values.
void validate(const TokenizeConfig& cfg);

}  // namespace ftune::data
