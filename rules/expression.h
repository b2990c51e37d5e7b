// The rule expression language (spec §4): lexing and parsing into a flat node array.
//
// Parsing checks syntax only: literals, operators, parentheses, function names and
// arities, window durations, and the top-level `COND for D` suffix. Whether a probe or
// field exists and whether types fit is checked later, when the rule set is compiled
// against the declared probes (rules/binder.h).
//
// Precedence, loosest first:
//   or  <  and  <  not  <  == != < <= > >=  <  + -  <  * /  <  unary -
// `not` binds looser than a comparison (as in SQL and Python), so `not api.status == 200`
// means `not (api.status == 200)`. Comparisons do not chain (`a < b < c` is an error).
// Internal to rules/: the public contract is rules/rule_set.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"

namespace rollguard {

enum class ExprOp : uint8_t {
  // Leaves.
  kNumber,  // number, duration (as seconds) or percent (as a fraction) literal
  kString,  // "double quoted" literal; `text` holds the unescaped value
  kBool,    // true / false; `number` is 1 or 0
  kRef,     // probe, probe.field, probe.json.a.b; `text` holds it as written
  // Unary: operand in `lhs`.
  kNeg,
  kNot,
  // Binary: `lhs` op `rhs`.
  kAdd,
  kSub,
  kMul,
  kDiv,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
  // Functions. Window functions take their argument in `lhs` and the window in `window`.
  kAvg,
  kMin,
  kMax,
  kQuantile,  // p50/p90/p95/p99: the quantile (0.5 ...) is in `number`
  kRatio,
  kChanges,
  kCount,
  kAbsent,  // absent(x): argument in `lhs`
  kAge,     // age(probe): argument in `lhs`
};

// What a node evaluates to, decided when the rule set is compiled.
enum class ValueType : uint8_t {
  kNumber,
  kBool,
  kString,
  kAny,  // a json.* field: a number or a string, known only from the data
};

// 48 bytes: a compiled rule keeps its nodes for the life of the configuration, a dozen
// per rule, so their size is paid per rule (bench/RESULTS.md). Text lives beside them in
// Expr::texts, since most nodes have none.
struct ExprNode {
  ExprOp op = ExprOp::kNumber;
  // Filled in by the binder:
  ValueType type = ValueType::kNumber;
  int32_t lhs = -1;
  int32_t rhs = -1;
  uint32_t begin = 0;  // source span [begin, end) in the expression text
  uint32_t end = 0;
  // kString: the unescaped value; kRef: the reference as written; functions: the name.
  // An index into Expr::texts, -1 for none. Once bound, RuleSet keeps only kString's
  // (KeepLiteralTextsOnly in rules/program.h).
  int32_t text = -1;
  // Filled in by the binder:
  int32_t probe = -1;  // kRef, window functions, kAge: index of the probe read
  int32_t slot = -1;   // kRef, window functions over a field: the probe's field slot
  double number = 0;
  Duration window{0};
};

struct Expr {
  // The text parsed. RuleSet empties it once a condition is compiled (its definition keeps
  // the same text), so nothing that evaluates or formats an Expr may read it.
  std::string source;
  std::vector<ExprNode> nodes;
  std::vector<std::string> texts;  // ExprNode::text
  int32_t root = -1;
  std::optional<Duration> for_duration;  // the top-level `for D` suffix

  // The node's text ("" when it has none).
  const std::string& Text(const ExprNode& node) const {
    static const std::string kNone;
    return node.text < 0 ? kNone : texts[static_cast<size_t>(node.text)];
  }
};

struct ExprError {
  size_t offset = 0;    // where in the expression text the problem starts
  std::string message;  // "expected ..., got ..."
};

struct ExprParse {
  Expr expr;
  std::optional<ExprError> error;
};

// Parses `text`. `allow_for` permits the top-level `COND for D` suffix (conditions do,
// summary templates do not).
ExprParse ParseExpression(std::string_view text, bool allow_for);

// One `{{ expr | filter }}` of a summary template, or the literal text between them.
enum class SummaryFilter : uint8_t { kNone, kPercent, kDuration, kNumber };
struct SummaryPart {
  std::string literal;  // used when `expr` has no nodes
  Expr expr;
  SummaryFilter filter = SummaryFilter::kNone;
  size_t offset = 0;  // where the expression starts in the template text
};

struct SummaryParse {
  std::vector<SummaryPart> parts;
  std::optional<ExprError> error;
};

// Parses a summary template: literal text with `{{ expr }}` and `{{ expr | filter }}`
// (filters: percent, duration, number).
SummaryParse ParseSummary(std::string_view text);

// "file:line:column: [rule NAME] key: message" followed by the expression and a caret
// under `offset`. The column assumes the value was written as `key = value` on the
// key's line; inside continuation lines it counts in the joined value.
std::string ExpressionErrorMessage(const std::string& file, int line, std::string_view rule,
                                   std::string_view key, std::string_view text, size_t offset,
                                   std::string_view message);

}  // namespace rollguard
