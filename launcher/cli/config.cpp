#include "launcher/cli/config.h"

// toml++ 3.3.0 asserts on some malformed input (`[=x]`) before refusing it with a proper
// parse_error a few lines later (what a Release build, with the assert compiled out, prints).
// A Debug build or the fuzzer would abort there instead of naming the file and line.
#ifndef TOML_ASSERT
#define TOML_ASSERT(expr) static_cast<void>(0)
#endif
#include <toml++/toml.h>

#include <cstdio>
#include <map>
#include <iostream>

#include "common/error.h"
#include "common/text.h"

namespace ftune::cli {
namespace {

// The deepest subcommand chosen on the command line: config keys apply to it.
std::vector<const CLI::App*> active_path(const CLI::App* root) {
  std::vector<const CLI::App*> path;
  const CLI::App* cur = root;
  while (true) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) break;
    cur = subs.front();
    path.push_back(cur);
  }
  return path;
}

std::vector<std::string> long_names(const CLI::App* cmd) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : cmd->get_options())
    for (const auto& n : opt->get_lnames()) names.push_back(n);
  return names;
}

void flatten(const toml::table& table, const std::string& prefix,
             std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (const auto& [key, node] : table) {
    std::string name = prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    if (const auto* sub = node.as_table())
      flatten(*sub, name, out);
    else
      out.emplace_back(name, &node);
  }
}

std::string scalar_text(const toml::node& node) {
  if (const auto* s = node.as_string()) return s->get();
  if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* i = node.as_integer()) return std::to_string(i->get());
  if (const auto* f = node.as_floating_point()) return detail::toml_value(f->get());
  if (const auto* d = node.as_date()) {
    std::ostringstream os;
    os << *d;
    return os.str();
  }
  throw Error("unsupported TOML value at line " + std::to_string(node.source().begin.line) +
              " (use a string, number, boolean or array)");
}

// What an option takes, from CLI11's type name: for checking TOML values and for messages.
enum class Kind { boolean, integer, number, string };

Kind kind_of(const CLI::Option* opt) {
  const std::string t = opt->get_type_name();
  if (opt->get_expected_min() == 0 || t.find("BOOLEAN") != std::string::npos) return Kind::boolean;
  if (t.find("INT") != std::string::npos) return Kind::integer;
  if (t.find("FLOAT") != std::string::npos) return Kind::number;
  return Kind::string;
}

// What that means to someone writing a TOML file.
std::string expected_value(const CLI::Option* opt) {
  const bool list = opt->get_expected_max() > 1;
  switch (kind_of(opt)) {
    case Kind::boolean: return "true or false";
    case Kind::integer: return list ? "integers" : "an integer";
    case Kind::number: return list ? "numbers" : "a number";
    case Kind::string: break;
  }
  return list ? "strings" : "a string";
}

bool matches(Kind kind, const toml::node& n) {
  switch (kind) {
    case Kind::boolean: return n.is_boolean();
    case Kind::integer: return n.is_integer();
    case Kind::number: return n.is_integer() || n.is_floating_point();
    case Kind::string: return n.is_string();
  }
  return false;
}

const char* toml_type(const toml::node& n) {
  if (n.is_boolean()) return "a boolean";
  if (n.is_integer()) return "an integer";
  if (n.is_floating_point()) return "a float";
  if (n.is_string()) return "a string";
  if (n.is_array()) return "an array";
  return "a date or time";
}

// [line] of each key the config file set, by flag name ("train.seed"), so that a value CLI11
// cannot convert is reported with the file and line it came from.
std::map<std::string, int> g_config_lines;

class TomlConfig : public CLI::Config {
 public:
  TomlConfig(const CLI::App* root, const std::string* file)
      : root_(root), file_(file), lines_(g_config_lines) {}

  std::string to_config(const CLI::App*, bool, bool, std::string) const override { return ""; }

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::string text((std::istreambuf_iterator<char>(input)), std::istreambuf_iterator<char>());
    toml::table table;
    try {
      table = toml::parse(text, *file_);
    } catch (const toml::parse_error& e) {
      throw Error(*file_ + ":" + std::to_string(e.source().begin.line) + ": invalid TOML: " +
                  std::string(e.description()));
    }
    auto path = active_path(root_);
    if (path.empty()) throw Error("--config needs a subcommand, e.g. `ftune model init --config run.toml`");
    std::vector<std::string> parents;
    for (const auto* app : path) parents.push_back(app->get_name());
    const CLI::App* cmd = path.back();
    auto valid = long_names(cmd);

    std::vector<std::pair<std::string, const toml::node*>> leaves;
    flatten(table, "", leaves);
    std::vector<CLI::ConfigItem> items;
    for (const auto& [name, node] : leaves) {
      check_known(name, *node, valid);
      check_type(cmd, name, *node);
      if (const auto* arr = node->as_array(); arr && arr->empty()) {
        if (skip_empty_list(cmd, name, *node)) continue;
      }
      lines_[name] = int(node->source().begin.line);
      CLI::ConfigItem item;
      item.parents = parents;
      item.name = name;
      if (const auto* arr = node->as_array()) {
        for (const auto& el : *arr) item.inputs.push_back(scalar_text(el));
      } else {
        item.inputs.push_back(scalar_text(*node));
      }
      items.push_back(std::move(item));
    }
    return items;
  }

 private:
  void check_known(const std::string& name, const toml::node& node,
                   const std::vector<std::string>& valid) const {
    if (std::find(valid.begin(), valid.end(), name) != valid.end()) return;
    std::string msg = *file_ + ":" + std::to_string(node.source().begin.line) + ": unknown key '" +
                      name + "' for `" + root_->get_name();
    for (const auto* app : active_path(root_)) msg += " " + app->get_name();
    msg += "`";
    std::string near = closest_match(name, valid);
    if (!near.empty()) msg += "; did you mean '" + near + "'?";
    else msg += "; run with --help to list the keys";
    throw Error(msg);
  }

  // A TOML value of the wrong type (`seed = 1.5`, `use_rslora = 3`), with its file and line.
  void check_type(const CLI::App* cmd, const std::string& name, const toml::node& node) const {
    const CLI::Option* opt = cmd->get_option_no_throw("--" + name);
    if (opt == nullptr) return;
    const Kind kind = kind_of(opt);
    const bool list = opt->get_expected_max() > 1;
    const toml::node* bad = nullptr;
    if (const auto* arr = node.as_array()) {
      if (!list) bad = &node;
      for (const auto& el : *arr)
        if (bad == nullptr && !matches(kind, el)) bad = &el;
    } else if (!matches(kind, node)) {
      bad = &node;
    }
    if (bad == nullptr) return;
    throw Error(*file_ + ":" + std::to_string(node.source().begin.line) + ": " + name + " takes " +
                (list ? "a list of " : "") + expected_value(opt) + ", not " + toml_type(*bad) +
                (bad != &node ? " element" : ""));
  }

  // `inputs = []` (what --dump-config writes for an empty list) has no values to give CLI11,
  // which refuses an option with none. Neither the command line nor a file can empty a list,
  // so an empty resolved list is always the default: leave the option unset. A list whose
  // default is not empty cannot be cleared; say so rather than keep the default silently.
  bool skip_empty_list(const CLI::App* cmd, const std::string& name, const toml::node& node) const {
    const CLI::Option* opt = cmd->get_option_no_throw("--" + name);
    const std::string dflt = opt ? opt->get_default_str() : "";
    if (dflt.empty() || dflt == "[]" || dflt == "{}") return true;
    throw Error(*file_ + ":" + std::to_string(node.source().begin.line) + ": " + name +
                " = [] cannot empty a list whose default is " + dflt + "; give its values");
  }

  const CLI::App* root_;
  const std::string* file_;  // never null: the --config option's value
  std::map<std::string, int>& lines_;
};

std::string g_config_file;  // [path] value of --config, read by the formatter

}  // namespace

namespace detail {
std::string toml_quote(const std::string& v) {
  std::string out = "\"";
  for (unsigned char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}
}  // namespace detail

std::string SectionList::dump_toml() const {
  std::string out;
  for (const auto& top : top_) out += top();
  if (!top_.empty()) out += "\n";
  for (const auto& s : sections_) out += "[" + s.name + "]\n" + s.dump() + "\n";
  return out;
}

void install_toml_config(CLI::App& root) {
  root.config_formatter(std::make_shared<TomlConfig>(&root, &g_config_file));
  root.set_config("--config", "", "TOML config file; flags given on the command line win")
      ->each([](const std::string& f) { g_config_file = f; });
}

CLI::App* CommandSet::group(CLI::App* parent, const std::string& name,
                           const std::string& description) {
  CLI::App* g = parent->add_subcommand(name, description);
  g->fallthrough();
  g->require_subcommand(1);
  return g;
}

Command& CommandSet::add(CLI::App* parent, const std::string& name, const std::string& description) {
  auto cmd = std::make_unique<Command>();
  cmd->app = parent->add_subcommand(name, description);
  // Lets `ftune model init --config x.toml` reach the root's --config option.
  cmd->app->fallthrough();
  cmd->app->add_flag("--dump-config", "print the resolved config as TOML and exit");
  commands_.push_back(std::move(cmd));
  return *commands_.back();
}

int CommandSet::run_selected(CLI::App& root) {
  for (const auto& cmd : commands_) {
    if (!cmd->app->parsed()) continue;
    if (cmd->app->get_option("--dump-config")->count() > 0) {
      std::cout << cmd->sections.dump_toml();
      return 0;
    }
    std::string path;
    for (const CLI::App* a = cmd->app; a != nullptr; a = a->get_parent()) path = a->get_name() + (path.empty() ? "" : " ") + path;
    for (const CLI::Option* opt : cmd->required)
      if (opt->count() == 0)
        throw Error(opt->get_name() + " is required: `" + path + " " +
                    (opt->get_lnames().empty() ? opt->get_name() : "--" + opt->get_lnames().front() + " VALUE") +
                    "` (see --help)");
    return cmd->run ? cmd->run() : 0;
  }
  std::cerr << root.help();
  return 2;
}

namespace {

// The option a CLI11 message is about ("Could not convert: --train.seed = 1.5").
const CLI::Option* option_in(const std::string& msg, const CLI::App* cmd, std::string& key) {
  for (size_t at = msg.find("--"); at != std::string::npos; at = msg.find("--", at + 2)) {
    size_t end = msg.find_first_of(" =:,", at + 2);
    key = msg.substr(at + 2, end == std::string::npos ? std::string::npos : end - at - 2);
    if (const CLI::Option* opt = cmd->get_option_no_throw("--" + key)) return opt;
  }
  return nullptr;
}

// A value of the wrong type: the key, what it takes, and the file and line when the config
// file gave it.
std::string describe_bad_value(const std::string& msg, const CLI::App* cmd, bool count_mismatch) {
  std::string key;
  const CLI::Option* opt = option_in(msg, cmd, key);
  if (opt == nullptr) return msg;
  std::string out;
  auto line = g_config_lines.find(key);
  if (line != g_config_lines.end()) out = g_config_file + ":" + std::to_string(line->second) + ": ";
  const bool list = opt->get_expected_max() > 1;
  return out + msg + " (" + key + " takes " + (list ? "a list of " : "") + expected_value(opt) +
         (count_mismatch && !list ? ", not a list" : "") + ")";
}

// `ftune trian`: the word given where a command was required, and the nearest command.
std::string describe_missing_command(const CLI::App& root, const std::string& msg) {
  auto path = active_path(&root);
  const CLI::App* parent = path.empty() ? &root : path.back();
  std::vector<std::string> names;
  for (const CLI::App* sub : parent->get_subcommands({})) names.push_back(sub->get_name());
  std::string prefix = "ftune";
  for (const auto* app : path) prefix += " " + app->get_name();
  for (const auto& arg : root.remaining()) {
    if (arg.rfind("-", 0) == 0) continue;
    std::string near = closest_match(arg, names);
    return "unknown command `" + prefix + " " + arg + "`" +
           (near.empty() ? "" : "; did you mean `" + prefix + " " + near + "`?") + " (see " + prefix + " --help)";
  }
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) list += (i ? ", " : "") + names[i];
  return msg + ": `" + prefix + "` takes one of: " + list;
}

}  // namespace

int report_parse_error(CLI::App& root, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return root.exit(e);  // --help
  std::string msg = e.what();
  auto path = active_path(&root);
  const CLI::App* cmd = path.empty() ? &root : path.back();
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && msg.find("subcommand") != std::string::npos) {
    msg = describe_missing_command(root, msg);
  } else if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr ||
             dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr ||
             dynamic_cast<const CLI::ValidationError*>(&e) != nullptr) {
    msg = describe_bad_value(msg, cmd, dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr);
  } else if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    auto valid = long_names(cmd);
    for (const auto& arg : root.remaining()) {
      if (arg.rfind("--", 0) != 0) continue;
      std::string key = arg.substr(2, arg.find('=') - 2);
      std::string near = closest_match(key, valid);
      msg += "\n  unknown flag --" + key +
             (near.empty() ? "; see --help" : "; did you mean --" + near + "?");
    }
  }
  std::cerr << "ftune: error: " << msg << "\n";
  return e.get_exit_code() == 0 ? 2 : e.get_exit_code();
}

}  // namespace ftune::cli
