#include "runtime/tasks.h"

#include "runtime/peft/bnb4bit.h"
#include "runtime/peft/methods.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "common/error.h"
#include "common/text.h"
#include "data/pipeline/render.h"
#include "data/tokenizer/byte_tokenizer.h"
#include "data/tokenizer/tokenizer.h"
#include <nlohmann/json.hpp>

#include "runtime/checkpoint/hf_checkpoint.h"
#include "runtime/generate.h"

namespace ftune::model {
namespace fs = std::filesystem;

namespace {

ModelConfig init_config(const ModelInitConfig& c) {
  ModelConfig cfg = c.config.empty() ? preset(c.preset) : ModelConfig::from_file(c.config);
  if (!c.dtype.empty()) {
    dtype_bytes(c.dtype);  // validates the name
    cfg.dtype = c.dtype;
  }
  return cfg;
}

// Byte copy with streams: std::filesystem::copy_file is one of the functions libtorch.so also
// exports, and this TU links LibTorch (see the pitfall with remove_all).
void copy_bytes(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error("model init: cannot read " + from.string());
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  if (!(out << in.rdbuf()) || !out.flush()) throw Error("model init: cannot write " + to.string());
}

// Loads the tokenizer (which validates it) and checks that the embedding has a row for each
// of its ids. A preset's bos/eos ids are placeholders, so they become the tokenizer's: then
// generation stops where the tokenizer's text ends. A --model.config keeps its own ids.
std::shared_ptr<const data::Tokenizer> init_tokenizer(const ModelInitConfig& c, ModelConfig& cfg) {
  auto tok = data::Tokenizer::load(c.tokenizer);
  if (tok->vocab_size() > cfg.vocab_size) {
    throw Error("model init: tokenizer " + tok->path() + " has " + std::to_string(tok->vocab_size()) +
                " tokens, but the model's vocab_size is " + std::to_string(cfg.vocab_size) +
                " (" + (c.config.empty() ? "preset " + c.preset : c.config) +
                "); the embedding needs a row per token id: use a preset or --model.config with "
                "vocab_size >= " + std::to_string(tok->vocab_size()) + " (tiny-llama3 has 512)");
  }
  if (c.config.empty()) {
    cfg.bos_token_id.reset();
    if (tok->bos_id()) cfg.bos_token_id = *tok->bos_id();
    cfg.eos_token_ids.clear();
    if (tok->eos_id()) cfg.eos_token_ids.push_back(*tok->eos_id());
  }
  return tok;
}

// `--model.tokenizer byte`: the built-in byte-level tokenizer, written straight into the model
// directory once the model is known to have a row for each of its ids.
std::string write_byte_tokenizer(const ModelInitConfig& c, const ModelConfig& cfg,
                                 const std::string& out_dir) {
  if (cfg.vocab_size < data::kByteTokenizerVocab) {
    throw Error("model init: the built-in byte tokenizer has " +
                std::to_string(data::kByteTokenizerVocab) + " tokens, but the model's vocab_size is " +
                std::to_string(cfg.vocab_size) + " (" + (c.config.empty() ? "preset " + c.preset : c.config) +
                "); use a preset or --model.config with vocab_size >= " +
                std::to_string(data::kByteTokenizerVocab) + " (tiny-llama3 has 512)");
  }
  fs::create_directories(out_dir);
  const std::pair<const char*, std::string> files[] = {
      {"tokenizer.json", data::byte_tokenizer_json()},
      {"tokenizer_config.json", data::byte_tokenizer_config_json()}};
  for (const auto& [name, text] : files) {
    const std::string path = (fs::path(out_dir) / name).string();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!(out << text) || !out.flush()) throw Error("model init: cannot write " + path);
  }
  return (fs::path(out_dir) / "tokenizer.json").string();
}

// tokenizer.json and the files transformers' AutoTokenizer reads beside it (ours reads
// tokenizer_config.json and the chat template files too), so the copy behaves as the original.
void copy_tokenizer_files(const data::Tokenizer& tok, const std::string& out_dir) {
  const fs::path from_dir = fs::path(tok.path()).parent_path();
  for (const std::string& name : data::tokenizer_file_names()) {
    // --model.tokenizer may name the tokenizer.json file itself, under any name.
    const fs::path from = name == "tokenizer.json" ? fs::path(tok.path()) : from_dir / name;
    const fs::path to = fs::path(out_dir) / name;
    if (!fs::exists(from)) continue;
    // Writing a file onto itself would truncate it first (--out is the tokenizer's directory).
    if (fs::exists(to) && fs::equivalent(from, to)) continue;
    copy_bytes(from, to);
  }
}

// Ids the tokenizer has no token for are left out of the text, as `tokenizers`' decode does:
// models often have more embedding rows than tokens (Qwen2: 151936 rows, 151665 tokens), and
// a random or barely trained model may well sample those rows.
std::string decode_new_text(const data::Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::vector<int32_t> known;
  for (int64_t id : ids) {
    if (id >= 0 && id < tok.vocab_size() && !tok.id_to_token(static_cast<int32_t>(id)).empty())
      known.push_back(static_cast<int32_t>(id));
  }
  // Said on stderr, so that a short or empty text is not mistaken for the model's whole output.
  if (known.size() < ids.size())
    std::cerr << "[generate] note: " << ids.size() - known.size() << " of " << ids.size()
              << " new ids have no token in " << tok.path() << " (" << tok.vocab_size()
              << " tokens); the text leaves them out\n";
  return tok.decode(known, /*skip_special_tokens=*/true);
}

// --tokenizer, else the model directory's tokenizer.json; null when there is neither.
std::shared_ptr<const data::Tokenizer> generate_tokenizer(const GenerateConfig& c) {
  if (!c.tokenizer.empty()) return data::Tokenizer::load(c.tokenizer);
  if (!fs::exists(fs::path(c.model) / "tokenizer.json")) return nullptr;
  try {
    return data::Tokenizer::load(c.model);
  } catch (const Error& e) {
    // Ids in, ids out worked before tokenizers did: a tokenizer.json we cannot read (another
    // model type) costs only the text there. A text prompt cannot do without it.
    if (c.prompt_ids.empty()) throw;
    std::cerr << "[generate] warning: printing ids only: " << e.what() << "\n";
    return nullptr;
  }
}

// --chat: the messages through the tokenizer's chat template, encoded without special tokens
// (the template writes them), as transformers' apply_chat_template(tokenize=True) does.
std::vector<int64_t> chat_prompt_ids(const GenerateConfig& c, const data::Tokenizer& tok) {
  nlohmann::json messages = nlohmann::json::array();
  if (!c.system.empty()) messages.push_back({{"role", "system"}, {"content", c.system}});
  messages.push_back({{"role", "user"}, {"content", c.chat}});
  std::string text;
  try {
    text = data::render_chat_prompt({tok.bos_token(), tok.eos_token(), tok.chat_template()},
                                    messages.dump());
  } catch (const Error& e) {
    throw Error("generate --chat: " + tok.path() + ": " + e.what());
  }
  std::vector<int32_t> ids = tok.encode(text, /*add_special_tokens=*/false);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

// Where a chat reply ends: the model's eos ids, the tokenizer's eos, and the end-of-turn tokens
// of the common templates (ChatML, Llama 3, Gemma) when the vocabulary has them.
std::vector<int64_t> chat_stop_ids(const ModelConfig& cfg, const data::Tokenizer& tok) {
  std::vector<int64_t> stop = cfg.eos_token_ids;
  auto add = [&](std::optional<int32_t> id) {
    if (id && std::find(stop.begin(), stop.end(), *id) == stop.end()) stop.push_back(*id);
  };
  add(tok.eos_id());
  for (const char* t : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>"}) add(tok.token_to_id(t));
  return stop;
}

std::vector<int64_t> prompt_token_ids(const GenerateConfig& c, const data::Tokenizer* tok) {
  if (!c.prompt_ids.empty()) return parse_token_ids(c.prompt_ids);
  if (!c.chat.empty()) {
    if (tok == nullptr)
      throw Error("generate: --chat TEXT needs a tokenizer with a chat template, and the model "
                  "directory " + c.model + " has no tokenizer.json; pass --tokenizer PATH");
    return chat_prompt_ids(c, *tok);
  }
  if (tok == nullptr) {
    throw Error("generate: --prompt TEXT needs a tokenizer, and the model directory " + c.model +
                " has no tokenizer.json; pass --tokenizer PATH (a tokenizer.json or a directory "
                "holding one), or give the prompt as token ids with --prompt-ids 1,5,9");
  }
  // With special tokens, as `tokenizers` encodes by default: the post-processor's BOS.
  std::vector<int32_t> ids = tok->encode(c.prompt, /*add_special_tokens=*/true);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

c10::Device parse_device(const std::string& name) {
  c10::Device device(at::kCPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    throw Error("generate: --device '" + name + "' is not a device (cpu, cuda, cuda:1)");
  }
  if (device.is_cuda() && !at::hasCUDA())
    throw Error("generate: --device " + name + " asked for, but no CUDA device is available");
  return device;
}

}  // namespace

std::string init_model_dir(const ModelInitConfig& c, const std::string& out_dir) {
  if (out_dir.empty()) throw Error("model init: --out DIR is required");
  ModelConfig cfg = init_config(c);
  ModelInitConfig tc = c;
  if (c.tokenizer == data::kByteTokenizerName && !fs::exists(c.tokenizer))
    tc.tokenizer = write_byte_tokenizer(c, cfg, out_dir);
  // Checked before anything is written, so a bad tokenizer leaves no half-made directory.
  auto tok = tc.tokenizer.empty() ? nullptr : init_tokenizer(tc, cfg);
  const std::string with_tok =
      tok ? " + tokenizer, " + with_commas(tok->vocab_size()) + " tokens" : std::string();
  fs::create_directories(out_dir);
  if (tok) copy_tokenizer_files(*tok, out_dir);
  if (c.config_only) {
    std::ofstream(fs::path(out_dir) / "config.json") << cfg.to_json().dump(2) << "\n";
    return "wrote " + out_dir + "/config.json (" + cfg.architecture + ", " +
           with_commas(parameter_count(cfg)) + " parameters, no weights" + with_tok + ")";
  }
  // Allocated directly in the stored dtype: an 8B model in bf16 needs 16 GB, not 32.
  CausalLM model(cfg, torch::TensorOptions(parse_scalar_type(cfg.dtype)));
  model.init_weights(static_cast<uint64_t>(c.seed));
  SaveOptions save;
  save.max_shard_bytes = static_cast<uint64_t>(c.max_shard_mb) * 1000 * 1000;
  save_model(model, out_dir, save);
  return "wrote " + out_dir + " (" + cfg.architecture + ", " +
         with_commas(parameter_count(cfg)) + " parameters, " + cfg.dtype + with_tok + ")";
}

GenerateResult run_generate(const GenerateConfig& c) {
  if (c.model.empty()) throw Error("generate: --model DIR is required");
  if (int(!c.prompt.empty()) + int(!c.prompt_ids.empty()) + int(!c.chat.empty()) != 1)
    throw Error("generate: give exactly one of --prompt TEXT, --prompt-ids 1,5,9 or --chat TEXT");
  if (!c.system.empty() && c.chat.empty())
    throw Error("generate: --system TEXT goes with --chat TEXT");
  if (c.max_new_tokens < 0) throw Error("generate: --max-new-tokens must be >= 0");
  // Tokenizer and prompt before the model: their errors come without the wait for the weights.
  auto tok = generate_tokenizer(c);
  std::vector<int64_t> prompt = prompt_token_ids(c, tok.get());
  const c10::Device device = parse_device(c.device);
  auto model = peft::load_base(c.model, torch::TensorOptions(parse_scalar_type(c.dtype)).device(device));
  if (!c.adapter.empty()) peft::load_adapter(*model, c.adapter);
  model->eval();
  SamplingOptions s;
  s.greedy = c.greedy;
  s.temperature = c.temperature;
  s.top_p = c.top_p;
  s.top_k = c.top_k;
  s.seed = static_cast<uint64_t>(c.seed);
  GenerateResult result;
  const std::vector<int64_t> stop =
      !c.chat.empty() && tok ? chat_stop_ids(model->config(), *tok) : model->config().eos_token_ids;
  result.ids = generate(*model, prompt, c.max_new_tokens, s, stop);
  if (tok) result.text = decode_new_text(*tok, result.ids);
  return result;
}

std::string merge_adapter(const MergeConfig& c) {
  if (c.model.empty() || c.adapter.empty() || c.out.empty())
    throw Error("merge: give --model BASE_DIR --adapter ADAPTER_DIR --out DIR");
  auto model = load_model(c.model, torch::TensorOptions(at::kFloat));
  peft::load_adapter(*model, c.adapter);
  const size_t merged = peft::merge_adapters(*model);
  SaveOptions o;
  o.dtype = c.dtype.empty() ? model->config().dtype : c.dtype;
  o.tokenizer_dir = c.model;
  save_model(*model, c.out, o);
  return "merged " + std::to_string(merged) + " adapted projections of " + c.adapter + " into " +
         c.model + " -> " + c.out + " (" + o.dtype + ")";
}

}  // namespace ftune::model
