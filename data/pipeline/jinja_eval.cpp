// Jinja evaluation: walks the tree with a stack of scopes. Values are JSON values; "undefined"
// is a discarded JSON value so that `x is defined` and missing keys behave as in Jinja2.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "data/pipeline/jinja_ast.h"

namespace ftune::data::jinja {
namespace {

const char* const kNamespaceKey = "\x01namespace";  // marks a namespace() object

// Bounds on one render, far above what chat templates need (a loop per message, a few nested);
// 100k iterations take ~0.2 s. The fuzzer builds with smaller ones: it checks that the bounds
// hold, and ASan makes each iteration ~40x slower.
#ifndef FTUNE_JINJA_MAX_STEPS
#define FTUNE_JINJA_MAX_STEPS 100000
#endif
#ifndef FTUNE_JINJA_MAX_BYTES
#define FTUNE_JINJA_MAX_BYTES (64u << 20)
#endif
constexpr int64_t kMaxSteps = FTUNE_JINJA_MAX_STEPS;  // [loop iterations]
constexpr int64_t kMaxItems = 1 << 20;                // [list items] from range() or +
constexpr size_t kMaxBytes = FTUNE_JINJA_MAX_BYTES;   // [bytes] of any string and of the output

Value undefined() { return Value(Value::value_t::discarded); }
bool is_undefined(const Value& v) { return v.is_discarded(); }
bool is_namespace(const Value& v) { return v.is_object() && v.contains(kNamespaceKey); }

bool truthy(const Value& v) {
  if (is_undefined(v) || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  if (v.is_number_float()) return v.get<double>() != 0.0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return !v.empty();
}

std::string type_name(const Value& v) {
  if (is_undefined(v)) return "undefined";
  if (v.is_null()) return "none";
  if (v.is_boolean()) return "bool";
  if (v.is_number_integer()) return "int";
  if (v.is_number()) return "float";
  if (v.is_string()) return "string";
  if (v.is_array()) return "list";
  return "dict";
}

// tojson as transformers registers it: json.dumps(ensure_ascii=False), Python's separators.
void to_json(const Value& v, std::string& out) {
  if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      to_json(v[i], out);
    }
    out += ']';
  } else if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() == kNamespaceKey) continue;
      if (!first) out += ", ";
      first = false;
      out += Value(it.key()).dump() + ": ";
      to_json(it.value(), out);
    }
    out += '}';
  } else if (is_undefined(v)) {
    out += "null";
  } else {
    out += v.dump(-1, ' ', false, Value::error_handler_t::replace);
  }
}

// str(v) as Jinja prints it.
std::string to_str(const Value& v) {
  if (v.is_string()) return v.get<std::string>();
  if (is_undefined(v)) return "";
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d)) + ".0";
  }
  std::string s;
  to_json(v, s);
  return s;
}

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t a = 0, b = s.size();
  if (left) a = s.find_first_not_of(chars);
  if (a == std::string::npos) return "";
  if (right) b = s.find_last_not_of(chars) + 1;
  return s.substr(a, b - a);
}
const char* const kWhitespace = " \t\n\r\f\v";

class Renderer {
 public:
  Renderer(const std::string& name, const std::string& source, const Value& globals)
      : name_(name), source_(source), globals_(globals) {
    scopes_.emplace_back();  // the template's top level; globals are read in place below it
  }

  void run(const std::vector<std::unique_ptr<Node>>& body) { exec(body); }
  std::string& out() { return out_; }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    throw RenderError(where(name_, source_, pos) + ": " + msg);
  }

  // A template runs once per record (several times with loss masks), so a loop that does not
  // end in reasonable time or a string that doubles each iteration must fail that record
  // rather than hang or exhaust memory.
  void step(size_t pos) {
    if (++steps_ > kMaxSteps) fail(pos, "more than " + std::to_string(kMaxSteps) + " loop iterations");
  }
  std::string bounded(const Expr& e, std::string s) const {
    if (s.size() > kMaxBytes) fail(e.pos, "a string of over " + std::to_string(kMaxBytes) + " bytes");
    return s;
  }

  // ---- statements ----------------------------------------------------------------------------
  void exec(const std::vector<std::unique_ptr<Node>>& body) {
    for (const auto& n : body) exec(*n);
  }
  void exec(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kText: out_ += n.text; break;
      case Node::Kind::kOutput:
        out_ += to_str(eval(*n.expr));
        if (out_.size() > kMaxBytes) fail(n.pos, "the rendered text is over " + std::to_string(kMaxBytes) + " bytes");
        break;
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (!cond || truthy(eval(*cond))) {
            exec(body);
            break;
          }
        }
        break;
      case Node::Kind::kFor: exec_for(n); break;
      case Node::Kind::kSet: exec_set(n); break;
    }
  }

  void exec_set(const Node& n) {
    Value v = eval(*n.expr);
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = std::move(v);
      return;
    }
    Value* ns = find(n.targets[0]);
    if (!ns || !is_namespace(*ns)) fail(n.pos, "'" + n.targets[0] + "' is not a namespace()");
    (*ns)[n.targets[1]] = std::move(v);
  }

  void exec_for(const Node& n) {
    Value seq_tmp;
    const Value& seq = *eval_ref(*n.expr, seq_tmp);
    std::vector<Value> items;
    if (seq.is_array()) {
      items.assign(seq.begin(), seq.end());
    } else if (seq.is_object()) {
      for (auto it = seq.begin(); it != seq.end(); ++it) items.push_back(it.key());
    } else if (seq.is_string()) {
      for (char c : seq.get<std::string>()) items.push_back(std::string(1, c));
    } else if (!is_undefined(seq) && !seq.is_null()) {
      fail(n.expr->pos, "cannot loop over a " + type_name(seq));
    }
    if (n.loop_filter) {
      std::vector<Value> kept;
      for (auto& item : items) {
        step(n.pos);
        scopes_.emplace_back();
        bind_targets(n, item);
        if (truthy(eval(*n.loop_filter))) kept.push_back(std::move(item));
        scopes_.pop_back();
      }
      items.swap(kept);
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      step(n.pos);
      scopes_.emplace_back();  // a set inside the loop does not leak out (Jinja scoping)
      bind_targets(n, std::move(items[i]));  // used once: move, don't copy
      scopes_.back()["loop"] = Value{{"index0", i},       {"index", i + 1},
                                     {"first", i == 0},   {"last", i == len - 1},
                                     {"length", len},     {"revindex", len - i},
                                     {"revindex0", len - i - 1}};
      exec(n.body);
      scopes_.pop_back();
    }
    if (len == 0) exec(n.else_body);
  }

  void bind_targets(const Node& n, Value item) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = std::move(item);
      return;
    }
    if (!item.is_array() || item.size() != n.targets.size()) {
      fail(n.pos, "cannot unpack a " + type_name(item) + " into " + std::to_string(n.targets.size()) +
                      " loop variables");
    }
    for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = item[k];
  }

  Value* find(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return &f->second;
    }
    return nullptr;
  }
  const Value* lookup(const std::string& name) {
    if (const Value* v = find(name)) return v;
    auto g = globals_.find(name);
    return g == globals_.end() ? nullptr : &*g;
  }

  // Evaluates names, attributes and subscripts to a pointer into the variables where it can,
  // else into `tmp`: `messages[0]['role']` then copies one string, not the message list.
  const Value* eval_ref(const Expr& e, Value& tmp) {
    if (e.kind == Expr::Kind::kName) {
      if (const Value* v = lookup(e.name)) return v;
      tmp = undefined();
      return &tmp;
    }
    if (e.kind != Expr::Kind::kAttr && e.kind != Expr::Kind::kItem) {
      tmp = eval(e);
      return &tmp;
    }
    Value obj_tmp;
    const Value* obj = eval_ref(*e.args[0], obj_tmp);
    Value key = e.kind == Expr::Kind::kAttr ? Value(e.name) : eval(*e.args[1]);
    if (obj != &obj_tmp) {
      if (obj->is_object() && key.is_string()) {
        auto it = obj->find(key.get_ref<const std::string&>());
        if (it != obj->end()) return &*it;
      } else if (obj->is_array() && key.is_number_integer()) {
        int64_t i = key.get<int64_t>(), n = static_cast<int64_t>(obj->size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return &(*obj)[static_cast<size_t>(i)];
      }
    }
    tmp = get_item(e, *obj, key);
    return &tmp;
  }

  // ---- expressions ---------------------------------------------------------------------------
  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.value;
      case Expr::Kind::kName:
      case Expr::Kind::kAttr:
      case Expr::Kind::kItem: {
        Value tmp;
        const Value* v = eval_ref(e, tmp);
        return v == &tmp ? std::move(tmp) : *v;
      }
      case Expr::Kind::kSlice: return slice(e);
      case Expr::Kind::kCall: return call(e);
      case Expr::Kind::kFilter: return filter(e);
      case Expr::Kind::kTest: return test(e) != e.negated;
      case Expr::Kind::kUnary: return unary(e);
      case Expr::Kind::kBinary: return binary(e);
      case Expr::Kind::kCond:
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : undefined();
      case Expr::Kind::kList: {
        Value list = Value::array();
        for (const auto& a : e.args) list.push_back(eval(*a));
        return list;
      }
      case Expr::Kind::kDict: {
        Value dict = Value::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.is_string()) fail(e.args[i]->pos, "dict keys must be strings here");
          dict[k.get<std::string>()] = eval(*e.args[i + 1]);
        }
        return dict;
      }
    }
    return undefined();
  }

  Value get_item(const Expr& e, const Value& obj, const Value& key) {
    if (obj.is_object() && key.is_string()) {
      auto it = obj.find(key.get<std::string>());
      return it == obj.end() ? undefined() : *it;
    }
    if ((obj.is_array() || obj.is_string()) && key.is_number_integer()) {
      int64_t n = static_cast<int64_t>(obj.is_array() ? obj.size() : obj.get_ref<const std::string&>().size());
      int64_t i = key.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) fail(e.pos, "index " + std::to_string(key.get<int64_t>()) + " out of range");
      if (obj.is_array()) return obj[static_cast<size_t>(i)];
      return std::string(1, obj.get_ref<const std::string&>()[static_cast<size_t>(i)]);
    }
    if (is_undefined(obj)) fail(e.pos, "cannot read '" + to_str(key) + "' of an undefined value");
    if (obj.is_array() || obj.is_string()) return undefined();  // e.g. a method name
    fail(e.pos, "cannot read '" + to_str(key) + "' of a " + type_name(obj));
  }

  Value slice(const Expr& e) {
    Value obj = eval(*e.args[0]);
    if (!obj.is_array() && !obj.is_string()) fail(e.pos, "cannot slice a " + type_name(obj));
    int64_t n = static_cast<int64_t>(obj.is_array() ? obj.size() : obj.get_ref<const std::string&>().size());
    auto bound = [&](const ExprPtr& x, int64_t dflt) {
      if (!x) return dflt;
      Value v = eval(*x);
      if (!v.is_number_integer()) fail(x->pos, "slice bounds must be integers");
      int64_t i = v.get<int64_t>();
      if (i < 0) i += n;
      return std::clamp<int64_t>(i, 0, n);
    };
    int64_t a = bound(e.args[1], 0), b = std::max(a, bound(e.args[2], n));
    if (obj.is_string()) return obj.get<std::string>().substr(static_cast<size_t>(a), static_cast<size_t>(b - a));
    Value out = Value::array();
    for (int64_t i = a; i < b; ++i) out.push_back(obj[static_cast<size_t>(i)]);
    return out;
  }

  std::vector<Value> positional(const Expr& e, size_t first) {
    std::vector<Value> out;
    for (size_t i = first; i < e.args.size(); ++i) {
      if (!e.kwnames[i - 1].empty()) fail(e.args[i]->pos, "keyword arguments are only supported for namespace()");
      out.push_back(eval(*e.args[i]));
    }
    return out;
  }
  std::string arg_str(const Expr& e, const std::vector<Value>& args, size_t i, const std::string& dflt) {
    if (i >= args.size()) return dflt;
    if (!args[i].is_string()) fail(e.pos, "expected a string argument, got a " + type_name(args[i]));
    return args[i].get<std::string>();
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::kName) {
      if (callee.name == "namespace") {
        Value ns = Value::object();
        ns[kNamespaceKey] = true;
        for (size_t i = 1; i < e.args.size(); ++i) {
          if (e.kwnames[i - 1].empty()) fail(e.args[i]->pos, "namespace() takes keyword arguments");
          ns[e.kwnames[i - 1]] = eval(*e.args[i]);
        }
        return ns;
      }
      std::vector<Value> args = positional(e, 1);
      if (callee.name == "raise_exception") fail(e.pos, "raise_exception: " + arg_str(e, args, 0, ""));
      if (callee.name == "range" && args.size() == 1 && args[0].is_number_integer()) {
        const int64_t n = args[0].get<int64_t>();
        if (n > kMaxItems) fail(e.pos, "range(" + std::to_string(n) + ") is over " + std::to_string(kMaxItems) + " items");
        Value out = Value::array();
        for (int64_t i = 0; i < n; ++i) out.push_back(i);
        return out;
      }
      fail(callee.pos, "unsupported Jinja function '" + callee.name + "'");
    }
    if (callee.kind != Expr::Kind::kAttr) fail(e.pos, "unsupported Jinja construct 'call of an expression'");
    return method(e, eval(*callee.args[0]), callee.name, positional(e, 1));
  }

  // The Python str/dict methods templates call: content.strip(), message.get('x'), ...
  Value method(const Expr& e, const Value& obj, const std::string& m, const std::vector<Value>& args) {
    if (obj.is_string()) {
      const std::string& s = obj.get_ref<const std::string&>();
      if (m == "strip") return strip(s, arg_str(e, args, 0, kWhitespace), true, true);
      if (m == "lstrip") return strip(s, arg_str(e, args, 0, kWhitespace), true, false);
      if (m == "rstrip") return strip(s, arg_str(e, args, 0, kWhitespace), false, true);
      if (m == "upper" || m == "lower") {
        std::string r = s;
        for (char& c : r) c = static_cast<char>(m == "upper" ? std::toupper(static_cast<unsigned char>(c))
                                                           : std::tolower(static_cast<unsigned char>(c)));
        return r;
      }
      if (m == "startswith") return s.rfind(arg_str(e, args, 0, ""), 0) == 0;
      if (m == "endswith") {
        std::string x = arg_str(e, args, 0, "");
        return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
      }
    }
    if (obj.is_object()) {
      if (m == "get" && !args.empty()) {
        Value v = get_item(e, obj, args[0]);
        return is_undefined(v) ? (args.size() > 1 ? args[1] : Value(nullptr)) : v;
      }
      if (m == "items" || m == "keys" || m == "values") {
        Value out = Value::array();
        for (auto it = obj.begin(); it != obj.end(); ++it) {
          if (m == "items") out.push_back(Value::array({it.key(), it.value()}));
          else out.push_back(m == "keys" ? Value(it.key()) : it.value());
        }
        return out;
      }
    }
    fail(e.pos, "unsupported method '" + m + "' of a " + type_name(obj));
  }

  Value filter(const Expr& e) {
    Value v = eval(*e.args[0]);
    std::vector<Value> args = positional(e, 1);
    const std::string& f = e.name;
    if (f == "trim") return strip(to_str(v), arg_str(e, args, 0, kWhitespace), true, true);
    if (f == "length" || f == "count") {
      if (v.is_string()) return static_cast<int64_t>(v.get_ref<const std::string&>().size());
      if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
      fail(e.pos, "a " + type_name(v) + " has no length");
    }
    if (f == "tojson") {
      std::string s;
      to_json(v, s);
      return s;
    }
    if (f == "string") return to_str(v);
    if (f == "upper" || f == "lower") return method(e, to_str(v), f, {});
    if (f == "default" || f == "d") return is_undefined(v) ? (args.empty() ? Value("") : args[0]) : v;
    if ((f == "first" || f == "last") && v.is_array()) {
      if (v.empty()) return undefined();
      return f == "first" ? v.front() : v.back();
    }
    if (f == "join" && v.is_array()) {
      std::string sep = arg_str(e, args, 0, ""), out;
      for (size_t i = 0; i < v.size(); ++i) {
        out += (i ? sep : "") + to_str(v[i]);
        if (out.size() > kMaxBytes) fail(e.pos, "a string of over " + std::to_string(kMaxBytes) + " bytes");
      }
      return out;
    }
    fail(e.pos, "unsupported Jinja filter '" + f + "'");
  }

  bool test(const Expr& e) {
    Value v = eval(*e.args[0]);
    const std::string& t = e.name;
    if (t == "defined") return !is_undefined(v);
    if (t == "undefined") return is_undefined(v);
    if (t == "none") return v.is_null();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer();
    if (t == "boolean") return v.is_boolean();
    if (t == "mapping") return v.is_object();
    if (t == "sequence" || t == "iterable") return v.is_array() || v.is_string() || v.is_object();
    if (t == "true" || t == "false") return v.is_boolean() && v.get<bool>() == (t == "true");
    if (t == "equalto" || t == "eq") return e.args.size() > 1 && v == eval(*e.args[1]);
    fail(e.pos, "unsupported Jinja test '" + t + "'");
  }

  Value unary(const Expr& e) {
    Value v = eval(*e.args[0]);
    if (e.name == "not") return !truthy(v);
    if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      if (x == std::numeric_limits<int64_t>::min()) fail(e.pos, "integer overflow in -(" + std::to_string(x) + ")");
      return -x;
    }
    if (v.is_number()) return -v.get<double>();
    fail(e.pos, "cannot negate a " + type_name(v));
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and" || op == "or") {  // short-circuit, returning an operand as Python does
      Value a = eval(*e.args[0]);
      if (truthy(a) == (op == "or")) return a;
      return eval(*e.args[1]);
    }
    Value a = eval(*e.args[0]), b = eval(*e.args[1]);
    if (op == "==") return equal(a, b);
    if (op == "!=") return !equal(a, b);
    if (op == "~") return bounded(e, to_str(a) + to_str(b));
    if (op == "in" || op == "not in") return contains(e, b, a) == (op == "in");
    if (op == "+" && a.is_string() && b.is_string()) return bounded(e, a.get<std::string>() + b.get<std::string>());
    if (op == "+" && a.is_array() && b.is_array()) {
      if (a.size() + b.size() > static_cast<size_t>(kMaxItems)) fail(e.pos, "a list of over " + std::to_string(kMaxItems) + " items");
      Value out = a;
      for (const auto& x : b) out.push_back(x);
      return out;
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") return compare(e, a, b);
    return arithmetic(e, a, b);
  }

  static bool equal(const Value& a, const Value& b) {
    if (is_undefined(a) || is_undefined(b)) return is_undefined(a) && is_undefined(b);
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    return a == b;
  }

  bool contains(const Expr& e, const Value& hay, const Value& needle) {
    if (hay.is_string()) {
      if (!needle.is_string()) fail(e.pos, "'in <string>' needs a string on the left");
      return hay.get_ref<const std::string&>().find(needle.get_ref<const std::string&>()) != std::string::npos;
    }
    if (hay.is_array()) {
      return std::any_of(hay.begin(), hay.end(), [&](const Value& x) { return equal(x, needle); });
    }
    if (hay.is_object()) return needle.is_string() && hay.contains(needle.get<std::string>());
    fail(e.pos, "'in' needs a string, list or dict on the right, got a " + type_name(hay));
  }

  Value compare(const Expr& e, const Value& a, const Value& b) {
    int c;
    if (a.is_number() && b.is_number()) {
      double x = a.get<double>(), y = b.get<double>();
      c = x < y ? -1 : (x > y ? 1 : 0);
    } else if (a.is_string() && b.is_string()) {
      c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    } else {
      fail(e.pos, "cannot compare a " + type_name(a) + " with a " + type_name(b));
    }
    const std::string& op = e.name;
    return op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
  }

  Value arithmetic(const Expr& e, const Value& a, const Value& b) {
    const std::string& op = e.name;
    if (!a.is_number() || !b.is_number() || a.is_boolean() || b.is_boolean()) {
      fail(e.pos, "unsupported operand types for '" + op + "': " + type_name(a) + " and " + type_name(b));
    }
    if (a.is_number_integer() && b.is_number_integer() && op != "/") {
      int64_t x = a.get<int64_t>(), y = b.get<int64_t>(), z = 0;
      if ((op == "%" || op == "//") && y == 0) fail(e.pos, "division by zero");
      // Python's ints do not overflow; ours are int64, and overflow is refused, not wrapped.
      bool over = false;
      if (op == "+") over = __builtin_add_overflow(x, y, &z);
      if (op == "-") over = __builtin_sub_overflow(x, y, &z);
      if (op == "*") over = __builtin_mul_overflow(x, y, &z);
      if (op == "//" || op == "%") over = x == std::numeric_limits<int64_t>::min() && y == -1;
      if (over && op == "%") return int64_t{0};
      if (over) fail(e.pos, "integer overflow in " + std::to_string(x) + " " + op + " " + std::to_string(y));
      if (op == "+" || op == "-" || op == "*") return z;
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {  // Python floors; C++ truncates
        --q;
        r += y;
      }
      return op == "%" ? r : q;
    }
    double x = a.get<double>(), y = b.get<double>();
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (y == 0) fail(e.pos, "division by zero");
    if (op == "/") return x / y;
    if (op == "//") return std::floor(x / y);
    return x - y * std::floor(x / y);
  }

  const std::string& name_;
  const std::string& source_;
  const Value& globals_;  // messages, bos_token, ...: read in place, never copied
  std::vector<std::map<std::string, Value>> scopes_;
  std::string out_;
  int64_t steps_ = 0;  // [loop iterations] so far in this render
};

}  // namespace

namespace {

// What the Renderer implements; check_supported refuses the rest up front.
const std::set<std::string> kFilters = {"trim", "length", "count", "tojson", "string", "upper", "lower",
                                        "default", "d", "first", "last", "join"};
const std::set<std::string> kTests = {"defined", "undefined", "none", "string", "number", "integer", "boolean",
                                      "mapping", "sequence", "iterable", "true", "false", "equalto", "eq"};
const std::set<std::string> kFunctions = {"namespace", "raise_exception", "range"};
const std::set<std::string> kMethods = {"strip", "lstrip", "rstrip", "upper", "lower", "startswith",
                                        "endswith", "get", "items", "keys", "values"};

void check_expr(const Expr& e, const std::string& name, const std::string& source) {
  auto refuse = [&](const std::string& what) {
    throw Error(where(name, source, e.pos) + ": unsupported Jinja " + what + " '" + e.name + "'");
  };
  if (e.kind == Expr::Kind::kFilter && !kFilters.count(e.name)) refuse("filter");
  if (e.kind == Expr::Kind::kTest && !kTests.count(e.name)) refuse("test");
  if (e.kind == Expr::Kind::kCall) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::kName && !kFunctions.count(callee.name)) {
      throw Error(where(name, source, callee.pos) + ": unsupported Jinja function '" + callee.name + "'");
    }
    if (callee.kind == Expr::Kind::kAttr && !kMethods.count(callee.name)) {
      throw Error(where(name, source, callee.pos) + ": unsupported method '" + callee.name + "'");
    }
  }
  for (const auto& a : e.args) {
    if (a) check_expr(*a, name, source);
  }
}

}  // namespace

void check_supported(const std::vector<std::unique_ptr<Node>>& body, const std::string& name,
                     const std::string& source) {
  for (const auto& n : body) {
    for (const ExprPtr* e : {&n->expr, &n->loop_filter}) {
      if (*e) check_expr(**e, name, source);
    }
    for (const auto& [cond, branch] : n->branches) {
      if (cond) check_expr(*cond, name, source);
      check_supported(branch, name, source);
    }
    check_supported(n->body, name, source);
    check_supported(n->else_body, name, source);
  }
}

Template::Template(const std::string& source, std::string name)
    : name_(std::move(name)), source_(source), body_(parse_template(source_, name_)) {
  check_supported(body_, name_, source_);
}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Value& globals) const {
  Renderer r(name_, source_, globals);
  r.run(body_);
  return std::move(r.out());
}

}  // namespace ftune::data::jinja
