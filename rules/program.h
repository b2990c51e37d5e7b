// Compiled expressions: names bound to probe and field indices, types checked, and an
// evaluator that reads probe data with no allocation and no string work.
//
// Values are three-valued where it matters: a reference to a stale probe or a missing
// field is unknown, arithmetic and comparisons with unknown are unknown, and `and`/`or`/
// `not` follow Kleene logic. Internal to rules/: the public contract is rules/rule_set.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "common/probe_types.h"
#include "common/time.h"
#include "rules/expression.h"
#include "rules/probe_history.h"

namespace rollguard {

// Everything the rules know about one declared probe, and its recent results.
struct ProbeData {
  std::string name;
  const ProbeTypeInfo* type = nullptr;
  Duration interval{0};
  SourceLocation where;
  std::vector<std::string> slots;       // field names rules read, in cell order
  Duration retention{0};                // longest window read on this probe (>= 2x interval)
  std::optional<ProbeHistory> history;  // created once slots and retention are known
  bool reported = false;
  TimePoint last_report{};
  bool config_error = false;  // of the latest result

  // Fresh: reported within 2x its interval.
  bool Fresh(TimePoint now) const { return reported && now - last_report <= 2 * interval; }
  // The first moment a reported probe is no longer Fresh, if nothing else arrives.
  TimePoint StaleAt() const { return last_report + 2 * interval + Duration{1}; }
};

// Binds the names in `expr` against `probes` (adding field slots as needed) and checks
// types. `condition` says the root must be usable as a condition (a number or a
// condition; not a string). On success fills node types and indices and returns true;
// on failure sets `error` (offset into the expression) and returns false.
// `probes_read` receives the indices of the probes the expression reads (deduplicated).
// `probe_index` (probe name -> index into `probes`), when given, replaces a linear search
// per reference: RuleSet::Compile passes the one it keeps, so checking 10,000 rules on 10,000
// probes is not 10^8 name comparisons.
using ProbeIndex = std::map<std::string, size_t, std::less<>>;
bool BindExpression(Expr* expr, bool condition, std::vector<ProbeData>* probes,
                    std::vector<int32_t>* probes_read, ExprError* error,
                    const ProbeIndex* probe_index = nullptr);

// After binding, evaluation reads references and functions by index and reasons quote
// them from the condition's source text: of an expression's texts only string literals are
// read again. Drops the others, which at two or three names per condition were ~190 bytes
// of every compiled rule (bench/RESULTS.md).
void KeepLiteralTextsOnly(Expr* expr);

struct Value {
  enum class Kind : uint8_t { kUnknown, kNumber, kString };
  Kind kind = Kind::kUnknown;
  double number = 0;
  std::string_view text;

  static Value Unknown() { return {}; }
  static Value Number(double n) { return {Kind::kNumber, n, {}}; }
  static Value Text(std::string_view s) { return {Kind::kString, 0, s}; }
  static Value Bool(bool b) { return Number(b ? 1 : 0); }
};

enum class Truth : uint8_t { kFalse, kTrue, kUnknown };

// What an evaluation reads. `scratch` must have capacity for the largest probe history
// (quantiles sort a copy there); it is the only buffer evaluation writes to.
struct EvalContext {
  const std::vector<ProbeData>* probes = nullptr;
  TimePoint now{};
  std::vector<double>* scratch = nullptr;
  // Inside ratio(): references to this probe read this historical sample.
  int32_t sample_probe = -1;
  const Cell* sample = nullptr;
  // When set, evaluation lowers it to the earliest moment after `now` at which a value it
  // read changes with no new probe result: a sample leaving a window, age() reaching the
  // value it is compared with. Only the parts evaluation actually read count (the others
  // cannot decide the result until what short-circuited them changes). Staleness is not
  // noted here: the caller knows which probes a condition reads. age() inside arithmetic
  // is not followed (it is caught by the next evaluation the owner makes anyway).
  TimePoint* next_change = nullptr;
};

Value Evaluate(const Expr& expr, int32_t node, EvalContext& context);
Truth EvaluateTruth(const Expr& expr, int32_t node, EvalContext& context);
Truth TruthOf(const Value& value);

// Formats a value for reasons: 4.2, "text", n/a.
std::string FormatValue(const Value& value);

}  // namespace rollguard
