#include "rules/expression.h"

#include <catch2/catch.hpp>

#include "rules/program.h"
#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

TEST_CASE("number, duration, percent and boolean literals have their documented values",
          "[rules][expression]") {
  CHECK(Holds("0.1 == 1e-1") == Tri::kTrue);
  CHECK(Holds("1e-3 == 0.001") == Tri::kTrue);
  CHECK(Holds(".5 == 0.5") == Tri::kTrue);
  CHECK(Holds("250ms == 0.25") == Tri::kTrue);
  CHECK(Holds("1m30s == 90") == Tri::kTrue);
  CHECK(Holds("1h == 3600") == Tri::kTrue);
  CHECK(Holds("1d == 86400") == Tri::kTrue);
  CHECK(Holds("10% == 0.1") == Tri::kTrue);
  CHECK(Holds("0.5% == 0.005") == Tri::kTrue);
  CHECK(Holds("true") == Tri::kTrue);
  CHECK(Holds("false") == Tri::kFalse);
  CHECK(Holds("\"a\\\"b\" == \"a\\\"b\"") == Tri::kTrue);
  CHECK(Holds("\"abc\" != \"abd\"") == Tri::kTrue);
}

TEST_CASE("arithmetic operators compute and bind tighter than comparisons", "[rules][expression]") {
  CHECK(Holds("1 + 2 * 3 == 7") == Tri::kTrue);
  CHECK(Holds("(1 + 2) * 3 == 9") == Tri::kTrue);
  CHECK(Holds("10 - 4 - 3 == 3") == Tri::kTrue);  // left associative
  CHECK(Holds("8 / 4 / 2 == 1") == Tri::kTrue);
  CHECK(Holds("-2 * -3 == 6") == Tri::kTrue);
  CHECK(Holds("- 1 + 3 == 2") == Tri::kTrue);  // unary minus binds tightest
  CHECK(Holds("7 / 2 == 3.5") == Tri::kTrue);
}

TEST_CASE("every comparison operator compares numbers", "[rules][expression]") {
  CHECK(Holds("2 == 2") == Tri::kTrue);
  CHECK(Holds("2 != 2") == Tri::kFalse);
  CHECK(Holds("1 < 2") == Tri::kTrue);
  CHECK(Holds("2 < 2") == Tri::kFalse);
  CHECK(Holds("2 <= 2") == Tri::kTrue);
  CHECK(Holds("3 <= 2") == Tri::kFalse);
  CHECK(Holds("3 > 2") == Tri::kTrue);
  CHECK(Holds("2 > 2") == Tri::kFalse);
  CHECK(Holds("2 >= 2") == Tri::kTrue);
  CHECK(Holds("1 >= 2") == Tri::kFalse);
}

TEST_CASE("and binds tighter than or, and not binds looser than a comparison",
          "[rules][expression]") {
  // true or (false and false) = true; (true or false) and false would be false.
  CHECK(Holds("true or false and false") == Tri::kTrue);
  CHECK(Holds("false and false or true") == Tri::kTrue);
  // not (1 == 2), not ((not 1) == 2).
  CHECK(Holds("not 1 == 2") == Tri::kTrue);
  CHECK(Holds("not true and false") == Tri::kFalse);  // (not true) and false
  CHECK(Holds("not not true") == Tri::kTrue);
  CHECK(Holds("1 < 2 and 3 > 2") == Tri::kTrue);
}

TEST_CASE("a number used as a condition is true when non-zero", "[rules][expression]") {
  CHECK(Holds("1") == Tri::kTrue);
  CHECK(Holds("0") == Tri::kFalse);
  CHECK(Holds("0.001") == Tri::kTrue);
  CHECK(Holds("-1") == Tri::kTrue);
  CHECK(Holds("not 0") == Tri::kTrue);
}

TEST_CASE("division by zero follows IEEE: NaN compares false", "[rules][expression]") {
  CHECK(Holds("0 / 0 > 1") == Tri::kFalse);
  CHECK(Holds("0 / 0 < 1") == Tri::kFalse);
  CHECK(Holds("0 / 0 == 0 / 0") == Tri::kFalse);
  CHECK(Holds("1 / 0 > 1e300") == Tri::kTrue);
}

namespace {

std::string SyntaxError(std::string_view text) {
  const ExprParse parsed = ParseExpression(text, true);
  REQUIRE(parsed.error.has_value());
  return std::to_string(parsed.error->offset) + ": " + parsed.error->message;
}

}  // namespace

TEST_CASE("syntax errors say what was expected, what was found, and where", "[rules][expression]") {
  CHECK(SyntaxError("api.latency > > 3s") ==
        "14: expected a number, string, probe, function call or (, got \">\"");
  CHECK(SyntaxError("") == "0: expected an expression, got nothing");
  CHECK(SyntaxError("(1 + 2") == "6: expected ), got the end of the expression");
  CHECK(SyntaxError("1 + 2)") == "5: expected an operator or the end of the expression, got \")\"");
  CHECK(SyntaxError("api = 1") == "4: expected == to compare, got =");
  CHECK(SyntaxError("api ! 1") == "4: expected != or not, got !");
  CHECK(SyntaxError("a && b") == "2: expected an operator, got & (write and)");
  CHECK(SyntaxError("a || b") == "2: expected an operator, got | (write or)");
  CHECK(SyntaxError("\"open") ==
        "0: expected a closing \" for this string, got the end of the expression");
  CHECK(SyntaxError("1.5s > 1") ==
        "0: expected a number or a duration like 250ms, 5s, 10m, 1h, 1d or 1m30s, got \"1.5s\"");
  CHECK(SyntaxError("api.latency > 3x") ==
        "14: expected a number or a duration like 250ms, 5s, 10m, 1h, 1d or 1m30s, got \"3x\"");
  CHECK(SyntaxError("1 < 2 < 3") ==
        "6: expected and/or between comparisons (they do not chain), got \"<\"");
  CHECK(SyntaxError("api and") ==
        "7: expected a number, string, probe, function call or (, got "
        "the end of the expression");
  CHECK(SyntaxError("api @ 1") == "4: expected an operand or operator, got \"@\"");
  CHECK(SyntaxError("api for") ==
        "7: expected a duration after for (like 30s or 5m), got the end of the expression");
  CHECK(SyntaxError("api for 5") == "8: expected a duration after for (like 30s or 5m), got \"5\"");
  CHECK(SyntaxError("api for 5s and db") ==
        "11: expected an operator or the end of the expression, got \"and\"");
  CHECK(SyntaxError("(api for 5s)") == "5: expected ), got \"for\"");
}

TEST_CASE("function calls are checked for name, arity and window", "[rules][expression]") {
  CHECK(SyntaxError("median(api.latency, 5m)") ==
        "0: expected a function (avg, min, max, p50, p90, p95, p99, ratio, changes, count, "
        "absent, age), got \"median\"");
  CHECK(SyntaxError("avg(api.latency)") ==
        "15: expected , and a window duration (avg(x, 5m)), got \")\"");
  CHECK(SyntaxError("avg(api.latency, 5)") == "17: expected a window duration like 5m, got \"5\"");
  CHECK(SyntaxError("avg(api.latency, 0s)") == "17: expected a window longer than 0s, got \"0s\"");
  CHECK(SyntaxError("absent(api, 5m)") == "10: expected ) to close absent(, got \",\"");
}

TEST_CASE("for is only allowed where the caller allows it", "[rules][expression]") {
  CHECK_FALSE(ParseExpression("not api for 30s", true).error.has_value());
  const ExprParse parsed = ParseExpression("not api for 30s", false);
  REQUIRE(parsed.error.has_value());
  CHECK(parsed.error->message == "expected an operator or the end, got for");
}

TEST_CASE("summary templates split into text and expressions with filters", "[rules][expression]") {
  const SummaryParse parsed = ParseSummary("5xx {{ api_errors | percent }} p95 {{ x }}.");
  REQUIRE_FALSE(parsed.error.has_value());
  REQUIRE(parsed.parts.size() == 5);
  CHECK(parsed.parts[0].literal == "5xx ");
  CHECK(parsed.parts[1].filter == SummaryFilter::kPercent);
  CHECK(parsed.parts[1].expr.nodes.size() == 1);
  CHECK(parsed.parts[2].literal == " p95 ");
  CHECK(parsed.parts[3].filter == SummaryFilter::kNone);
  CHECK(parsed.parts[4].literal == ".");

  const SummaryParse unclosed = ParseSummary("a {{ x ");
  REQUIRE(unclosed.error.has_value());
  CHECK(unclosed.error->offset == 2);
  const SummaryParse bad_filter = ParseSummary("{{ x | bytes }}");
  REQUIRE(bad_filter.error.has_value());
  CHECK(bad_filter.error->message ==
        "expected a filter (percent, duration, number), got \"bytes\"");
  const SummaryParse bad_expr = ParseSummary("ab {{ 1 + }}");
  REQUIRE(bad_expr.error.has_value());
  CHECK(bad_expr.error->offset == 10);
}

TEST_CASE("a bound expression keeps only its string literals and evaluates the same",
          "[rules][expression]") {
  std::vector<ProbeData> probes(2);
  probes[0].name = "api";
  probes[0].type = FindProbeType("http");
  probes[1].name = "svc";
  probes[1].type = FindProbeType("systemd");
  for (ProbeData& probe : probes) probe.interval = std::chrono::seconds(10);
  ExprParse parsed = ParseExpression(
      "svc.state == \"failed\" or avg(api.latency, 1m) > 2 or svc.state != \"active\"", true);
  REQUIRE_FALSE(parsed.error.has_value());
  std::vector<int32_t> read;
  ExprError error;
  REQUIRE(BindExpression(&parsed.expr, true, &probes, &read, &error));
  REQUIRE(parsed.expr.texts.size() == 6);  // 3 references, avg, 2 literals

  Expr kept = parsed.expr;
  KeepLiteralTextsOnly(&kept);
  CHECK(kept.texts == std::vector<std::string>{"failed", "active"});
  for (size_t i = 0; i < kept.nodes.size(); ++i) {
    const ExprNode& node = kept.nodes[i];
    CHECK(kept.Text(node) ==
          (node.op == ExprOp::kString ? parsed.expr.Text(parsed.expr.nodes[i]) : ""));
  }

  for (ProbeData& probe : probes) {
    probe.retention = std::chrono::minutes(1);
    probe.history.emplace(probe.slots.size(), probe.retention, 100);
  }
  std::vector<double> scratch;
  scratch.reserve(100);
  int step = 0;
  for (const char* state : {"failed", "active", "activating"}) {
    INFO(state);
    const TimePoint now = At(std::chrono::seconds(10 * ++step));
    for (ProbeData& probe : probes) {
      Cell* cells = probe.history->Append(now);
      probe.reported = true;
      probe.last_report = now;
      for (size_t s = 0; s < probe.slots.size(); ++s) {
        if (probe.slots[s] == "state") {
          cells[s].kind = Cell::Kind::kString;
          cells[s].text = state;
        } else {
          cells[s].kind = Cell::Kind::kNumber;
          cells[s].number = 0.1;
        }
      }
    }
    EvalContext context{&probes, now, &scratch};
    const Truth expected = EvaluateTruth(parsed.expr, parsed.expr.root, context);
    CHECK(expected == (std::string(state) == "active" ? Truth::kFalse : Truth::kTrue));
    CHECK(EvaluateTruth(kept, kept.root, context) == expected);
  }
}
