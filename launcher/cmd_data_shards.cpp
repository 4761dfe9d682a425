// `ftune data inspect DIR` and `ftune data verify DIR`: look at a token shard set
// (data/FORMAT.md) before spending GPU hours on it.
#include "common/error.h"
#include "common/text.h"
#include "data/shards/shard_set.h"
#include "data/shards/shard_verify.h"
#include "data/tokenizer/tokenizer.h"
#include "launcher/commands.h"

#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>

namespace ftune {

namespace {

struct InspectConfig {
  int64_t samples = 0;      // documents to print
  int64_t max_tokens = 64;  // per printed document
  std::string tokenizer;    // "" = print ids
  template <class F>
  void fields(F&& f) {
    f("samples", samples, "print the first N documents (masked tokens in [brackets])");
    f("max_tokens", max_tokens, "print at most this many tokens of each sample document");
    f("tokenizer", tokenizer, "print the samples as text decoded with this tokenizer.json (or a "
                              "directory holding one); must be the tokenizer the shards were made with");
  }
};

double file_size_or_zero(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0.0 : static_cast<double>(size);
}

void print_summary(const data::ShardSet& set) {
  const data::ShardIndex& ix = set.index();
  double bytes = 0;
  for (int64_t s = 0; s < set.shard_count(); ++s) bytes += file_size_or_zero(set.shard(s).path);
  const double mean = ix.documents ? static_cast<double>(ix.tokens) / static_cast<double>(ix.documents) : 0.0;
  char line[256];
  std::cout << "[data] shard set " << set.dir() << "\n";
  std::cout << "  format version   " << ix.format_version << "\n";
  std::cout << "  tokenizer hash   " << ix.tokenizer_hash << "\n";
  std::cout << "  vocab size       " << with_commas(ix.vocab_size) << " (tokens stored as " << ix.token_dtype << ")\n";
  std::cout << "  bos / eos ids    " << ix.bos_id << " / " << ix.eos_id << "  (-1: none)\n";
  std::snprintf(line, sizeof line, "%s of %s tokens masked (%.1f%%)", with_commas(ix.masked_tokens).c_str(),
                with_commas(ix.tokens).c_str(), ix.tokens ? 100.0 * ix.masked_tokens / ix.tokens : 0.0);
  std::cout << "  loss mask        " << (ix.has_loss_mask ? std::string("yes, ") + line : "no") << "\n";
  std::snprintf(line, sizeof line, "%.1f", mean);
  std::cout << "  documents        " << with_commas(ix.documents) << "\n";
  std::cout << "  tokens           " << with_commas(ix.tokens) << " (mean " << line << " per document)\n";
  std::cout << "  shards           " << set.shard_count() << " (" << format_bytes(bytes) << " on disk)\n";
  if (set.shard_count() > 0) {
    const auto& first = set.shard(0);
    std::string sources;
    for (const auto& f : first.source_files) sources += (sources.empty() ? "" : ", ") + f;
    std::cout << "  source files     " << (sources.empty() ? "(none recorded)" : sources) << "\n";
    std::cout << "  tool version     " << first.tool_version << "\n";
  }
  std::cout << "\n";
  std::snprintf(line, sizeof line, "  %-16s %12s %15s %12s %12s\n", "shard", "documents", "tokens", "masked", "size");
  std::cout << line;
  for (int64_t s = 0; s < set.shard_count(); ++s) {
    const auto& m = set.shard(s);
    std::snprintf(line, sizeof line, "  %-16s %12s %15s %12s %12s\n", m.file.c_str(), with_commas(m.documents).c_str(),
                  with_commas(m.tokens).c_str(), with_commas(m.masked_tokens).c_str(),
                  format_bytes(file_size_or_zero(m.path)).c_str());
    std::cout << line;
  }
}

// Renders a run of token ids: as ids, or as text when `ftune data inspect` has a --tokenizer.
struct TokenRenderer {
  std::function<std::string(const std::vector<int32_t>& ids)> render;
  const char* separator;  // between runs: ids need a space, text must not get one it lacks
};

std::string render_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  return out;
}

// Decoding with another tokenizer would print plausible nonsense; the hash tells them apart.
TokenRenderer text_renderer(const std::string& path, const data::ShardSet& set) {
  std::shared_ptr<const data::Tokenizer> tok = data::Tokenizer::load(path);
  const std::string& want = set.index().tokenizer_hash;
  if (tok->hash() != want) {
    throw Error("data inspect: tokenizer " + tok->path() + " has hash " + tok->hash() +
                ", but the shard set " + set.dir() + " was made with tokenizer hash " + want +
                "; pass the tokenizer the shards were made with");
  }
  // Special tokens stay visible (BOS, EOS, chat headers): they are what inspecting is for.
  return {[tok](const std::vector<int32_t>& ids) { return tok->decode(ids, /*skip_special_tokens=*/false); },
          ""};
}

// Masked (context-only) runs in [brackets], trained-on runs plain.
std::string render_document(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask,
                            const TokenRenderer& renderer) {
  std::string out;
  size_t i = 0;
  while (i < ids.size()) {
    size_t j = i;
    while (j < ids.size() && mask[j] == mask[i]) ++j;
    std::string run = renderer.render(std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(i),
                                                           ids.begin() + static_cast<std::ptrdiff_t>(j)));
    out += (out.empty() ? "" : renderer.separator) + (mask[i] ? run : "[" + run + "]");
    i = j;
  }
  return out;
}

void print_samples(const data::ShardSet& set, const InspectConfig& cfg, const TokenRenderer& render) {
  int64_t n = std::min(cfg.samples, set.documents());
  for (int64_t d = 0; d < n; ++d) {
    auto ref = set.document(d);
    int64_t shown = std::min(ref.length, cfg.max_tokens);
    std::vector<int32_t> ids(static_cast<size_t>(shown));
    std::vector<uint8_t> mask(static_cast<size_t>(shown));
    set.read_tokens(ref.shard, ref.begin, shown, ids.data());
    set.read_mask(ref.shard, ref.begin, shown, mask.data());
    std::cout << "\ndocument " << d << " (" << set.shard(ref.shard).file << ", " << with_commas(ref.length)
              << " tokens; masked tokens in [brackets]):\n  " << render_document(ids, mask, render);
    if (shown < ref.length) std::cout << " ... (+" << with_commas(ref.length - shown) << " tokens)";
    std::cout << "\n";
  }
}

int run_verify(const std::string& dir) {
  auto report = data::verify_shard_set(dir, [](const std::string& file) {
    std::cerr << "[data] checking " << file << "\n";
  });
  for (const auto& p : report.problems) std::cout << "[data] problem: " << p << "\n";
  std::cout << "[data] verify " << dir << ": " << report.shards_checked << " shards, "
            << with_commas(report.tokens_checked) << " tokens checked: "
            << (report.ok() ? "OK" : std::to_string(report.problems.size()) + " problem(s)") << "\n";
  return report.ok() ? 0 : 1;
}

}  // namespace

void register_data_shard_commands(CLI::App* data, cli::CommandSet& commands) {
  auto dir = std::make_shared<std::string>();
  auto inspect_cfg = std::make_shared<InspectConfig>();
  cli::Command& inspect = commands.add(data, "inspect", "summarise a token shard set (and print sample documents)");
  inspect.required.push_back(inspect.app->add_option("dir", *dir, "shard set directory (holding index.json)"));
  cli::add_section(inspect.app, inspect.sections, "inspect", *inspect_cfg, cli::ShortFlags::yes);
  inspect.run = [dir, inspect_cfg] {
    auto set = data::ShardSet::open(*dir);
    // The tokenizer is checked before anything is printed, so a mismatch is not lost in output.
    TokenRenderer renderer{render_ids, " "};
    if (!inspect_cfg->tokenizer.empty()) renderer = text_renderer(inspect_cfg->tokenizer, *set);
    print_summary(*set);
    print_samples(*set, *inspect_cfg, renderer);
    return 0;
  };

  auto verify_dir = std::make_shared<std::string>();
  cli::Command& verify = commands.add(data, "verify", "check every shard of a set; exits non-zero naming each problem");
  verify.required.push_back(verify.app->add_option("dir", *verify_dir, "shard set directory (holding index.json)"));
  verify.run = [verify_dir] { return run_verify(*verify_dir); };
}

}  // namespace ftune
