// Config plumbing for the ftune CLI. Each component owns a config struct that lists its
// fields once, in a member template:
//
//   struct OptimConfig {
//     double lr = 2e-5;
//     template <class F> void fields(F&& f) { f("lr", lr, "peak learning rate"); }
//   };
//
// `add_section` turns every field into a flag `--optim.lr` and a TOML key `[optim] lr`;
// `dump_toml` prints the resolved values. CLI beats file beats default.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace ftune::cli {

namespace detail {
// A TOML basic string: quotes, backslashes and control characters escaped, so that a dumped
// config (templates hold newlines) reads back unchanged.
std::string toml_quote(const std::string& v);
inline std::string toml_value(const std::string& v) { return toml_quote(v); }
inline std::string toml_value(bool v) { return v ? "true" : "false"; }
inline std::string toml_value(double v) {
  // The shortest of 15 or 17 significant digits that reads back as the same double.
  std::ostringstream os;
  os << std::setprecision(15) << v;
  // strtod, not std::stod: a subnormal (5e-324) reads back with ERANGE, which std::stod
  // turns into std::out_of_range ("internal error: stod" from --dump-config).
  if (std::strtod(os.str().c_str(), nullptr) != v) {
    os.str("");
    os << std::setprecision(17) << v;
  }
  std::string s = os.str();
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}
template <class T>
std::string toml_value(const T& v) {
  if constexpr (std::is_integral_v<T>) {
    return std::to_string(v);
  } else {  // std::vector<...>
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + toml_value(v[i]);
    return s + "]";
  }
}
}  // namespace detail

// The sections one subcommand accepts, for --dump-config.
class SectionList {
 public:
  void add(std::string name, std::function<std::string()> dump) {
    sections_.push_back({std::move(name), std::move(dump)});
  }
  // A key outside any section (`out = "dir"` for `--out`), dumped before the sections.
  void add_top(std::function<std::string()> dump) { top_.push_back(std::move(dump)); }
  std::string dump_toml() const;

 private:
  struct Section {
    std::string name;
    std::function<std::string()> dump;
  };
  std::vector<Section> sections_;
  std::vector<std::function<std::string()>> top_;
};

// Whether a section's fields also get a short flag: `max_new_tokens` -> `--max-new-tokens`,
// for commands whose options are few and typed by hand (`ftune generate`).
enum class ShortFlags { no, yes };

// Short names for chosen fields of a section, for commands with many sections where only a
// few keys are typed by hand: {"path", "model"} gives `--model` beside `--model.path`.
using ShortNames = std::vector<std::pair<std::string, std::string>>;

// Registers cfg's fields as `--<section>.<name>` on cmd and remembers the section for dumping.
template <class C>
void add_section(CLI::App* cmd, SectionList& list, const std::string& section, C& cfg,
                 ShortFlags short_flags = ShortFlags::no, const ShortNames& short_names = {}) {
  cfg.fields([&](const char* name, auto& value, const char* help) {
    using T = std::decay_t<decltype(value)>;
    std::string flag = "--" + section + "." + name;
    if (short_flags == ShortFlags::yes) {
      std::string dashed = name;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      flag += ",--" + dashed;
    }
    for (const auto& [field, short_name] : short_names)
      if (field == name) flag += ",--" + short_name;
    if constexpr (std::is_same_v<T, bool>) {
      // `--x.flag` sets true; `--x.flag=false` and TOML `flag = false` work too.
      cmd->add_flag(flag, value, help)->default_str(value ? "true" : "false");
    } else {
      cmd->add_option(flag, value, help)->capture_default_str();
    }
  });
  list.add(section, [&cfg]() {
    std::string out;
    cfg.fields([&](const char* name, auto& value, const char*) {
      out += std::string(name) + " = " + detail::toml_value(value) + "\n";
    });
    return out;
  });
}

// A one-flag option outside the sections (`ftune model init --out DIR`): `--name` on the
// command line, `name = ...` at the top of a config file and of --dump-config.
template <class T>
CLI::Option* add_top_option(CLI::App* cmd, SectionList& list, const std::string& name, T& value,
                            const std::string& help) {
  list.add_top([name, &value] { return name + " = " + detail::toml_value(value) + "\n"; });
  return cmd->add_option("--" + name, value, help);
}

// Installs `--config FILE` (TOML) on the root app, read through toml++ so that `[section]`
// tables map to dotted flags of the chosen subcommand.
void install_toml_config(CLI::App& root);

// One leaf subcommand: its CLI11 app, its config sections and what it runs.
struct Command {
  CLI::App* app = nullptr;  // owned by the parent app
  SectionList sections;
  std::function<int()> run;
  // Options the command cannot run without. Checked before run rather than by CLI11, so that
  // --dump-config works with them unset.
  std::vector<const CLI::Option*> required;
};

// All leaf subcommands; after parsing, runs the chosen one (or dumps its config).
class CommandSet {
 public:
  // A command group such as `model` in `ftune model init`.
  static CLI::App* group(CLI::App* parent, const std::string& name, const std::string& description);
  // Adds `name` under parent with a --dump-config flag; fill sections and run afterwards.
  Command& add(CLI::App* parent, const std::string& name, const std::string& description);
  // Exit code of the chosen command; prints help and returns 2 when none was chosen.
  int run_selected(CLI::App& root);
  const std::vector<std::unique_ptr<Command>>& all() const { return commands_; }

 private:
  std::vector<std::unique_ptr<Command>> commands_;
};

// Turns CLI11's errors into messages that name the flag or key and suggest the closest valid
// one; returns the exit code (0 for --help).
int report_parse_error(CLI::App& root, const CLI::ParseError& e);

}  // namespace ftune::cli
