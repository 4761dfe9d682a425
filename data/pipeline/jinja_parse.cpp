// Jinja parsing: the template is cut into text and tags (with HF's trim_blocks/lstrip_blocks
// and `-` whitespace control applied to the text), then tags are parsed by recursive descent.
#include <cctype>
#include <charconv>
#include <cstdint>
#include <algorithm>
#include <set>

#include "data/pipeline/jinja_ast.h"

namespace ftune::data::jinja {

std::string where(const std::string& name, const std::string& source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return name + ":" + std::to_string(line) + ":" + std::to_string(col);
}

namespace {

struct Chunk {
  enum class Kind { kText, kVar, kBlock } kind;
  size_t begin, end;  // [byte offsets] of the text or the tag's inside
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Offset of the closing delimiter of a tag starting at `from`, skipping quoted strings.
size_t find_tag_end(const std::string& s, size_t from, const char* close) {
  char quote = 0;
  for (size_t i = from; i + 1 < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == '\\') ++i;
      else if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == close[0] && s[i + 1] == close[1]) {
      return i;
    }
  }
  return std::string::npos;
}

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& name) : s_(src), name_(name) {}

  std::vector<Chunk> run() {
    size_t i = 0;
    bool strip_next = false;   // previous tag ended with `-`
    bool trim_newline = false;  // previous tag was a block or comment (trim_blocks)
    while (true) {
      size_t open = find_open(i);
      size_t text_end = open == std::string::npos ? s_.size() : open;
      size_t a = i, b = text_end;
      if (strip_next) {
        while (a < b && is_space(s_[a])) ++a;
      } else if (trim_newline) {
        if (a < b && s_[a] == '\n') ++a;
        else if (a + 1 < b && s_[a] == '\r' && s_[a + 1] == '\n') a += 2;
      }
      if (open == std::string::npos) {
        if (a < b) out_.push_back({Chunk::Kind::kText, a, b});
        return out_;
      }
      char type = s_[open + 1];
      size_t inner = open + 2;
      char mark = inner < s_.size() ? s_[inner] : 0;
      if (mark == '-') {
        while (b > a && is_space(s_[b - 1])) --b;
      } else if (type != '{' && mark != '+') {
        b = lstrip_block(a, b);
      }
      if (a < b) out_.push_back({Chunk::Kind::kText, a, b});
      if (mark == '-' || mark == '+') ++inner;
      const char* close = type == '{' ? "}}" : (type == '%' ? "%}" : "#}");
      size_t end = type == '#' ? s_.find(close, inner) : find_tag_end(s_, inner, close);
      if (end == std::string::npos) {
        throw Error(where(name_, s_, open) + ": unclosed '{" + std::string(1, type) + "' tag");
      }
      strip_next = end > inner && s_[end - 1] == '-';
      size_t inner_end = strip_next ? end - 1 : end;
      if (type == '{') out_.push_back({Chunk::Kind::kVar, inner, inner_end});
      if (type == '%') out_.push_back({Chunk::Kind::kBlock, inner, inner_end});
      trim_newline = type != '{';
      i = end + 2;
    }
  }

 private:
  size_t find_open(size_t from) const {
    for (size_t p = s_.find('{', from); p != std::string::npos; p = s_.find('{', p + 1)) {
      if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) return p;
    }
    return std::string::npos;
  }
  // lstrip_blocks: drop spaces and tabs between the start of the line and a block tag.
  size_t lstrip_block(size_t a, size_t b) const {
    size_t line_start = b;
    while (line_start > a && s_[line_start - 1] != '\n') --line_start;
    if (line_start == a && a > 0 && s_[a - 1] != '\n') return b;  // the line began before a tag
    for (size_t k = line_start; k < b; ++k) {
      if (s_[k] != ' ' && s_[k] != '\t') return b;
    }
    return line_start;
  }

  const std::string& s_;
  const std::string& name_;
  std::vector<Chunk> out_;
};

struct Token {
  enum class Kind { kName, kString, kInt, kFloat, kOp, kEnd } kind;
  std::string text;
  size_t pos;
};

// Real chat templates nest a few levels; the bound keeps hostile ones off the stack.
constexpr int kMaxDepth = 256;

class Parser {
 public:
  Parser(const std::string& src, const std::string& name, std::vector<Chunk> chunks)
      : s_(src), name_(name), chunks_(std::move(chunks)) {}

  std::vector<std::unique_ptr<Node>> parse_all() {
    std::string end;
    auto body = parse_body({}, end);
    return body;
  }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    throw Error(where(name_, s_, pos) + ": " + msg);
  }

  // ---- tokens of one tag ---------------------------------------------------------------------
  void tokenize(size_t begin, size_t end) {
    toks_.clear();
    ti_ = 0;
    size_t i = begin;
    while (i < end) {
      char c = s_[i];
      if (is_space(c)) {
        ++i;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < end && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) ++j;
        toks_.push_back({Token::Kind::kName, s_.substr(i, j - i), i});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t j = i;
        while (j < end && std::isdigit(static_cast<unsigned char>(s_[j]))) ++j;
        bool is_float = j + 1 < end && s_[j] == '.' && std::isdigit(static_cast<unsigned char>(s_[j + 1]));
        if (is_float) {
          ++j;
          while (j < end && std::isdigit(static_cast<unsigned char>(s_[j]))) ++j;
        }
        toks_.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInt, s_.substr(i, j - i), i});
        i = j;
      } else if (c == '\'' || c == '"') {
        i = lex_string(i, end);
      } else {
        static const char* kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
        std::string op(1, c);
        for (const char* two : kTwo) {
          if (i + 1 < end && s_[i] == two[0] && s_[i + 1] == two[1]) op = two;
        }
        if (std::string("+-*/%~()[]{}.,|:<>=!").find(c) == std::string::npos) {
          fail(i, std::string("unexpected character '") + c + "'");
        }
        toks_.push_back({Token::Kind::kOp, op, i});
        i += op.size();
      }
    }
    toks_.push_back({Token::Kind::kEnd, "", end});
  }

  size_t lex_string(size_t i, size_t end) {
    char quote = s_[i];
    std::string out;
    size_t j = i + 1;
    for (; j < end && s_[j] != quote; ++j) {
      if (s_[j] != '\\' || j + 1 >= end) {
        out += s_[j];
        continue;
      }
      char e = s_[++j];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        default: out += '\\'; out += e;  // Python keeps unknown escapes as written
      }
    }
    if (j >= end) fail(i, "unterminated string literal");
    toks_.push_back({Token::Kind::kString, out, i});
    return j + 1;
  }

  const Token& peek(size_t ahead = 0) const { return toks_[std::min(ti_ + ahead, toks_.size() - 1)]; }
  const Token& next() { return toks_[ti_ < toks_.size() - 1 ? ti_++ : ti_]; }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == Token::Kind::kOp && peek(ahead).text == op;
  }
  bool is_name(const char* n, size_t ahead = 0) const {
    return peek(ahead).kind == Token::Kind::kName && peek(ahead).text == n;
  }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++ti_;
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    ++ti_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(peek().pos, std::string("expected '") + op + "'" + found());
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::kName) fail(peek().pos, "expected a name" + found());
    return next().text;
  }
  std::string found() const {
    return peek().kind == Token::Kind::kEnd ? " at the end of the tag" : ", found '" + peek().text + "'";
  }
  void expect_end() {
    if (peek().kind != Token::Kind::kEnd) fail(peek().pos, "unexpected '" + peek().text + "'");
  }

  static ExprPtr make(Expr::Kind kind, size_t pos, std::string name = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    e->name = std::move(name);
    return e;
  }
  // Every child goes through here: a tree deeper than kMaxDepth is refused while it is built
  // (`1 + 1 + ... + 1` builds a left-deep tree with no recursion in the parser), so neither
  // evaluating nor destroying it can overflow the stack.
  void add_arg(Expr& parent, ExprPtr child) {
    if (child) {
      parent.depth = std::max(parent.depth, child->depth + 1);
      if (parent.depth > kMaxDepth) {
        fail(parent.pos, "expression nested more than " + std::to_string(kMaxDepth) + " levels deep");
      }
    }
    parent.args.push_back(std::move(child));
  }
  // Guards the parser's own recursion (`((((x))))`, `not not x`, nested blocks).
  class Nest {
   public:
    Nest(Parser& p, size_t pos) : p_(p) {
      if (++p_.nesting_ > kMaxDepth) p_.fail(pos, "nested more than " + std::to_string(kMaxDepth) + " levels deep");
    }
    ~Nest() { --p_.nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;

   private:
    Parser& p_;
  };
  ExprPtr binary(const std::string& op, size_t pos, ExprPtr a, ExprPtr b) {
    auto e = make(Expr::Kind::kBinary, pos, op);
    add_arg(*e, std::move(a));
    add_arg(*e, std::move(b));
    return e;
  }

  // ---- expressions, lowest precedence first (as Jinja2's parser) -----------------------------
  ExprPtr parse_expr() {
    Nest nest(*this, peek().pos);
    ExprPtr e = parse_or();
    if (is_name("if")) {
      size_t pos = next().pos;
      auto c = make(Expr::Kind::kCond, pos);
      add_arg(*c, std::move(e));
      add_arg(*c, parse_or());
      add_arg(*c, accept_name("else") ? parse_expr() : nullptr);
      return c;
    }
    return e;
  }
  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      size_t pos = next().pos;  // before parsing the right operand
      e = binary("or", pos, std::move(e), parse_and());
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      size_t pos = next().pos;  // before parsing the right operand
      e = binary("and", pos, std::move(e), parse_not());
    }
    return e;
  }
  ExprPtr parse_not() {
    Nest nest(*this, peek().pos);
    if (is_name("not")) {
      auto e = make(Expr::Kind::kUnary, next().pos, "not");
      add_arg(*e, parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_concat();
    while (true) {
      static const char* kOps[] = {"==", "!=", "<", ">", "<=", ">="};
      bool matched = false;
      for (const char* op : kOps) {
        if (is_op(op)) {
          size_t pos = next().pos;
          e = binary(op, pos, std::move(e), parse_concat());
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (is_name("in")) {
        size_t pos = next().pos;
        e = binary("in", pos, std::move(e), parse_concat());
      } else if (is_name("not") && is_name("in", 1)) {
        size_t pos = next().pos;
        next();
        e = binary("not in", pos, std::move(e), parse_concat());
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_test(ExprPtr subject) {
    size_t pos = next().pos;
    bool negated = accept_name("not");
    auto t = make(Expr::Kind::kTest, pos, expect_name());
    t->negated = negated;
    add_arg(*t, std::move(subject));
    if (accept_op("(")) parse_call_args(*t);
    return t;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math1();
    while (is_op("~")) {
      size_t pos = next().pos;  // before parsing the right operand
      e = binary("~", pos, std::move(e), parse_math1());
    }
    return e;
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_math2();
    while (is_op("+") || is_op("-")) {
      Token t = next();
      e = binary(t.text, t.pos, std::move(e), parse_math2());
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_unary();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      Token t = next();
      e = binary(t.text, t.pos, std::move(e), parse_unary());
    }
    return e;
  }
  ExprPtr parse_unary() {
    Nest nest(*this, peek().pos);
    if (is_op("-")) {
      auto e = make(Expr::Kind::kUnary, next().pos, "-");
      add_arg(*e, parse_unary());
      return e;
    }
    if (is_op("**")) fail(peek().pos, "unsupported Jinja construct '**' (power)");
    return parse_filters(parse_postfix(parse_primary()));
  }
  ExprPtr parse_filters(ExprPtr e) {
    while (is_op("|")) {
      next();
      size_t pos = peek().pos;
      auto f = make(Expr::Kind::kFilter, pos, expect_name());
      add_arg(*f, std::move(e));
      if (accept_op("(")) parse_call_args(*f);
      e = parse_postfix(std::move(f));
    }
    return e;
  }
  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        size_t pos = next().pos;
        auto a = make(Expr::Kind::kAttr, pos, expect_name());
        add_arg(*a, std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::kCall, next().pos);
        add_arg(*c, std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprPtr parse_subscript(ExprPtr obj) {
    size_t pos = next().pos;
    ExprPtr start = is_op(":") ? nullptr : parse_expr();
    if (!accept_op(":")) {
      expect_op("]");
      auto e = make(Expr::Kind::kItem, pos);
      add_arg(*e, std::move(obj));
      add_arg(*e, std::move(start));
      return e;
    }
    ExprPtr stop = is_op("]") || is_op(":") ? nullptr : parse_expr();
    if (is_op(":")) fail(peek().pos, "unsupported Jinja construct 'slice step'");
    expect_op("]");
    auto e = make(Expr::Kind::kSlice, pos);
    add_arg(*e, std::move(obj));
    add_arg(*e, std::move(start));
    add_arg(*e, std::move(stop));
    return e;
  }
  // After '(': positional and keyword arguments up to ')'; kwnames[i] names args[i + 1].
  void parse_call_args(Expr& call) {
    bool first = true;
    while (!accept_op(")")) {
      if (!first) {
        expect_op(",");
        if (accept_op(")")) return;  // trailing comma
      }
      first = false;
      std::string kw;
      if (peek().kind == Token::Kind::kName && is_op("=", 1)) {
        kw = next().text;
        next();
      }
      add_arg(call, parse_expr());
      call.kwnames.push_back(kw);
    }
  }
  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case Token::Kind::kString: {
        auto e = make(Expr::Kind::kLiteral, t.pos);
        e->value = next().text;
        while (peek().kind == Token::Kind::kString) e->value = e->value.get<std::string>() + next().text;
        return e;
      }
      case Token::Kind::kInt:
      case Token::Kind::kFloat: {
        auto e = make(Expr::Kind::kLiteral, t.pos);
        e->value = number_literal(t);
        next();
        return e;
      }
      case Token::Kind::kName: return parse_name();
      case Token::Kind::kOp:
        if (accept_op("(")) {
          ExprPtr e = parse_expr();
          if (is_op(",")) fail(peek().pos, "unsupported Jinja construct 'tuple'");
          expect_op(")");
          return e;
        }
        if (is_op("[")) return parse_list();
        if (is_op("{")) return parse_dict();
        break;
      case Token::Kind::kEnd: break;
    }
    fail(t.pos, "expected an expression" + found());
  }
  // The lexer only passes digits (and one '.'), so from_chars can fail only by range; Python
  // would take any size, but a literal past int64/double is no chat template's and must not
  // escape as std::out_of_range.
  Value number_literal(const Token& t) const {
    const char* first = t.text.data();
    const char* last = first + t.text.size();
    if (t.kind == Token::Kind::kInt) {
      int64_t v = 0;
      auto r = std::from_chars(first, last, v);
      if (r.ec != std::errc() || r.ptr != last) {
        fail(t.pos, "integer literal " + t.text + " is out of range (at most 9223372036854775807)");
      }
      return Value(v);
    }
    double v = 0;
    auto r = std::from_chars(first, last, v);
    if (r.ec != std::errc() || r.ptr != last) {
      fail(t.pos, "float literal " + t.text + " is out of the range of a double");
    }
    return Value(v);
  }
  ExprPtr parse_name() {
    const Token& t = next();
    auto e = make(Expr::Kind::kLiteral, t.pos);
    if (t.text == "true" || t.text == "True") e->value = true;
    else if (t.text == "false" || t.text == "False") e->value = false;
    else if (t.text == "none" || t.text == "None") e->value = nullptr;
    else e = make(Expr::Kind::kName, t.pos, t.text);
    return e;
  }
  ExprPtr parse_list() {
    auto e = make(Expr::Kind::kList, next().pos);
    while (!accept_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (accept_op("]")) break;
      add_arg(*e, parse_expr());
    }
    return e;
  }
  ExprPtr parse_dict() {
    auto e = make(Expr::Kind::kDict, next().pos);
    while (!accept_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (accept_op("}")) break;
      add_arg(*e, parse_expr());
      expect_op(":");
      add_arg(*e, parse_expr());
    }
    return e;
  }

  // ---- statements ----------------------------------------------------------------------------
  // Parses nodes until a block tag whose keyword is in `ends`; that keyword goes to `end`.
  std::vector<std::unique_ptr<Node>> parse_body(const std::set<std::string>& ends, std::string& end) {
    Nest nest(*this, ci_ < chunks_.size() ? chunks_[ci_].begin : s_.size());
    std::vector<std::unique_ptr<Node>> out;
    while (ci_ < chunks_.size()) {
      const Chunk c = chunks_[ci_++];
      auto node = std::make_unique<Node>();
      node->pos = c.begin;
      if (c.kind == Chunk::Kind::kText) {
        node->kind = Node::Kind::kText;
        node->text = s_.substr(c.begin, c.end - c.begin);
      } else if (c.kind == Chunk::Kind::kVar) {
        tokenize(c.begin, c.end);
        node->kind = Node::Kind::kOutput;
        node->expr = parse_expr();
        expect_end();
      } else {
        tokenize(c.begin, c.end);
        size_t pos = peek().pos;
        std::string kw = expect_name();
        if (ends.count(kw)) {
          end = kw;
          return out;
        }
        parse_statement(kw, pos, *node);
      }
      out.push_back(std::move(node));
    }
    if (!ends.empty()) {
      fail(s_.size(), "missing '{% " + *ends.rbegin() + " %}' (template ended inside a block)");
    }
    return out;
  }

  void parse_statement(const std::string& kw, size_t pos, Node& node) {
    if (kw == "if") return parse_if(node);
    if (kw == "for") return parse_for(node);
    if (kw == "set") return parse_set(pos, node);
    static const std::set<std::string> kKnown = {"elif", "else", "endif", "endfor", "endset"};
    if (kKnown.count(kw)) fail(pos, "'{% " + kw + " %}' without a matching opening tag");
    fail(pos, "unsupported Jinja construct '{% " + kw + " %}'");
  }

  void parse_if(Node& node) {
    node.kind = Node::Kind::kIf;
    ExprPtr cond = parse_expr();
    expect_end();
    while (true) {
      std::string end;
      auto body = parse_body({"elif", "else", "endif"}, end);
      node.branches.emplace_back(std::move(cond), std::move(body));
      if (end == "endif") break;
      if (end == "elif") {
        cond = parse_expr();
      } else {  // else: the last branch
        expect_end();
        auto rest = parse_body({"endif"}, end);
        node.branches.emplace_back(nullptr, std::move(rest));
        break;
      }
      expect_end();
    }
    expect_end();
  }

  void parse_for(Node& node) {
    node.kind = Node::Kind::kFor;
    node.targets.push_back(expect_name());
    while (accept_op(",")) node.targets.push_back(expect_name());
    if (!accept_name("in")) fail(peek().pos, "expected 'in'" + found());
    node.expr = parse_or();  // not parse_expr: a trailing `if` filters the loop
    if (accept_name("if")) node.loop_filter = parse_or();
    if (is_name("recursive")) fail(peek().pos, "unsupported Jinja construct 'recursive loop'");
    expect_end();
    std::string end;
    node.body = parse_body({"else", "endfor"}, end);
    if (end == "else") {
      expect_end();
      node.else_body = parse_body({"endfor"}, end);
    }
    expect_end();
  }

  void parse_set(size_t pos, Node& node) {
    node.kind = Node::Kind::kSet;
    node.targets.push_back(expect_name());
    if (accept_op(".")) node.targets.push_back(expect_name());
    if (is_op(",")) fail(peek().pos, "unsupported Jinja construct 'tuple assignment in set'");
    if (!accept_op("=")) fail(pos, "unsupported Jinja construct '{% set %} block'");
    node.expr = parse_expr();
    expect_end();
  }

  const std::string& s_;
  const std::string& name_;
  std::vector<Chunk> chunks_;
  size_t ci_ = 0;
  std::vector<Token> toks_;
  size_t ti_ = 0;
  int nesting_ = 0;  // [levels] of parser recursion now
};

}  // namespace

std::vector<std::unique_ptr<Node>> parse_template(const std::string& source, const std::string& name) {
  Lexer lexer(source, name);
  Parser parser(source, name, lexer.run());
  return parser.parse_all();
}

}  // namespace ftune::data::jinja
