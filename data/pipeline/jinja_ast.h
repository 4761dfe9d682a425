// Internal to the Jinja interpreter: the syntax tree shared by the parser and the evaluator.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/pipeline/jinja.h"

namespace ftune::data::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // value
    kName,     // name
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]] (either may be null)
    kCall,     // args[0](args[1..]) with kwnames[i-1] ("" = positional)
    kFilter,   // args[0] | name(args[1..])
    kTest,     // args[0] is [not] name(args[1..])
    kUnary,    // name in {not, -}
    kBinary,   // name is the operator
    kCond,     // args[0] if args[1] else args[2] (args[2] may be null)
    kList,     // [args...]
    kDict,     // {args[0]: args[1], ...}
  };
  Kind kind;
  size_t pos = 0;  // [byte offset into the template] for messages
  std::string name;
  Value value;
  bool negated = false;  // `is not`
  std::vector<ExprPtr> args;
  std::vector<std::string> kwnames;
  int depth = 0;  // of the subtree below; the parser bounds it so evaluation cannot overflow the stack
};

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet };
  Kind kind;
  size_t pos = 0;
  std::string text;                  // kText
  ExprPtr expr;                      // kOutput value, kSet value, kFor iterable
  std::vector<std::string> targets;  // kFor loop variables; kSet: {name} or {name, attr}
  ExprPtr loop_filter;               // kFor: `for x in xs if cond`
  // kIf: one (condition, body) per if/elif, condition null for else.
  std::vector<std::pair<ExprPtr, std::vector<std::unique_ptr<Node>>>> branches;
  std::vector<std::unique_ptr<Node>> body, else_body;  // kFor
};

// "name:line:col" for an offset into source.
std::string where(const std::string& name, const std::string& source, size_t pos);

// Throws ftune::Error for a filter, test, function or method the evaluator does not have, so
// an unsupported template fails once when loaded rather than on every record.
void check_supported(const std::vector<std::unique_ptr<Node>>& body, const std::string& name,
                     const std::string& source);

// Parses the template body; throws ftune::Error naming the construct and position.
std::vector<std::unique_ptr<Node>> parse_template(const std::string& source,
                                                  const std::string& name);

}  // namespace ftune::data::jinja
