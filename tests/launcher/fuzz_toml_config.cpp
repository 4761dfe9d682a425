// libFuzzer target for `--config FILE` (scripts/fuzz.sh toml): the input is written to a file
// and read as the config of `ftune data tokenize` (then validated) or, for inputs of odd size,
// of `ftune generate` (whose doubles exercise the float dump), through the same CLI11 + toml++
// path as the binary (launcher/cli/config.h). Accepted configs must dump (--dump-config) to
// TOML that reads back to the same dump. Refusals must be CLI11 parse errors or
// ftune::Errors; anything else (another exception, a sanitizer report) aborts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/pipeline/tokenize_config.h"
#include "launcher/cli/config.h"
#include "runtime/tasks.h"

namespace {

// One file per fuzzing process, rewritten for every input.
const std::string& config_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string p = std::string(dir && *dir ? dir : "/tmp") + "/ftune-fuzz-toml-XXXXXX";
    int fd = mkstemp(p.data());
    if (fd < 0) std::abort();
    close(fd);
    return p;
  }();
  return path;
}

void write_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Parses `ftune data tokenize --config FILE` (or `ftune generate`) into a fresh config;
// returns the resolved dump.
std::string parse_config(const std::string& path, bool generate, bool& accepted) {
  CLI::App app{"fuzz", "ftune"};
  ftune::cli::CommandSet commands;
  ftune::data::TokenizeConfig tokenize;
  ftune::model::GenerateConfig gen;
  ftune::cli::install_toml_config(app);
  CLI::App* data = ftune::cli::CommandSet::group(&app, "data", "data tools");
  ftune::cli::Command& tok_cmd = commands.add(data, "tokenize", "tokenize");
  ftune::cli::add_section(tok_cmd.app, tok_cmd.sections, "tokenize", tokenize, ftune::cli::ShortFlags::yes);
  ftune::cli::Command& gen_cmd = commands.add(&app, "generate", "generate");
  ftune::cli::add_section(gen_cmd.app, gen_cmd.sections, "generate", gen, ftune::cli::ShortFlags::yes);
  std::vector<const char*> argv = {"ftune", "data", "tokenize", "--config", path.c_str()};
  if (generate) argv = {"ftune", "generate", "--config", path.c_str()};
  accepted = false;
  try {
    app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  } catch (const CLI::ParseError& e) {
    if (std::getenv("FTUNE_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
    return "";
  } catch (const ftune::Error& e) {
    if (std::getenv("FTUNE_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
    // The formatter's own messages name the file.
    if (std::string(e.what()).find(path) == std::string::npos &&
        std::string(e.what()).rfind("unsupported TOML value", 0) != 0) {
      std::abort();
    }
    return "";
  }
  accepted = true;
  if (generate) return gen_cmd.sections.dump_toml();
  try {
    ftune::data::validate(tokenize);
  } catch (const ftune::Error& e) {
    if (std::string(e.what()).rfind("tokenize.", 0) != 0) std::abort();  // names the key
  }
  return tok_cmd.sections.dump_toml();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_file(config_path(), std::string(reinterpret_cast<const char*>(data), size));
  const bool generate = size % 2 == 1;  // a cheap, stable choice that mutations flip
  bool accepted = false;
  const std::string dump = parse_config(config_path(), generate, accepted);
  if (!accepted) return 0;
  // The resolved config, written into every run directory, must read back unchanged.
  write_file(config_path(), dump);
  bool again = false;
  const std::string dump2 = parse_config(config_path(), generate, again);
  if (!again || dump2 != dump) {
    std::fprintf(stderr, "dumped config does not read back:\n%s\n---\n%s\n", dump.c_str(), dump2.c_str());
    std::abort();
  }
  return 0;
}
