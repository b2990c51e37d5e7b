#include <catch2/catch.hpp>

#include "rules/probe_history.h"
#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

// api reports every 10s from 0s to 90s with latency 1, 2, ..., 10.
RuleSet WithLatencyRamp(const std::string& summary) {
  RuleSet rules = MustCompile("[rule t]\ngood = api.latency > 100\nsummary = " + summary + "\n");
  for (int i = 0; i < 10; ++i) {
    rules.Record("api", At(std::chrono::seconds(10 * i)), Up({}, i + 1));
  }
  return rules;
}

std::string Render(const std::string& expression, TimePoint now = At(90s)) {
  const RuleSet rules = WithLatencyRamp("{{ " + expression + " }}");
  return rules.RenderSummary(0, now);
}

}  // namespace

TEST_CASE("window functions aggregate the samples after now - W up to now", "[rules][window]") {
  // At 90s a 1m window holds the samples from 40s to 90s: latencies 5 to 10.
  CHECK(Render("count(api.latency, 1m)") == "6");
  CHECK(Render("avg(api.latency, 1m)") == "7.5");
  CHECK(Render("min(api.latency, 1m)") == "5");
  CHECK(Render("max(api.latency, 1m)") == "10");
  // Quantiles interpolate between closest ranks, as Prometheus' quantile_over_time.
  CHECK(Render("p50(api.latency, 1m)") == "7.5");
  CHECK(Render("p90(api.latency, 1m)") == "9.5");
  CHECK(Render("p95(api.latency, 1m)") == "9.75");
  CHECK(Render("p99(api.latency, 1m)") == "9.95");
  CHECK(Render("max(api.latency, 10s)") == "10");
  CHECK(Render("avg(api.latency, 5m)") == "5.5");
}

TEST_CASE("a window over a stale probe has no value", "[rules][window]") {
  CHECK(Render("avg(api.latency, 5m)", At(111s)) == "n/a");
  CHECK(Render("count(api.latency, 5m)", At(111s)) == "n/a");
}

TEST_CASE("window functions compare like any number in a condition", "[rules][window]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = p95(api.latency, 1m) > 5s\n"
      "warning = avg(api.latency, 1m) > 2\n");
  for (int i = 0; i < 6; ++i) {
    Report(rules, "api", At(std::chrono::seconds(10 * i)), Up({}, 3));
  }
  CHECK(GradeOf(rules, "t") == Grade::kWarning);
  rules.Record("api", At(60s), Up({}, 30));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(60s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.reason == "p95(api.latency, 1m) > 5s (p95(api.latency, 1m)=23.25)");
}

TEST_CASE("ratio is the fraction of samples with a known answer for which cond held",
          "[rules][window]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = ratio(api.status >= 500, 1m) > 10%\nsummary = "
      "{{ ratio(api.status >= 500, 1m) | percent }} of {{ count(api.status, 1m) }}\n");
  const double statuses[] = {200, 503, 200, 200, 500};
  for (int i = 0; i < 5; ++i) {
    Report(rules, "api", At(std::chrono::seconds(10 * i)), Up({{"status", statuses[i]}}));
  }
  CHECK(rules.RenderSummary(0, At(40s)) == "40% of 5");
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  // A sample without status is unknown and counts neither way.
  Report(rules, "api", At(50s), Up());
  CHECK(rules.RenderSummary(0, At(50s)) == "40% of 5");
  for (int i = 6; i < 13; ++i) {
    Report(rules, "api", At(std::chrono::seconds(10 * i)), Up({{"status", 200.0}}));
  }
  CHECK(rules.RenderSummary(0, At(120s)) == "0% of 6");
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
}

TEST_CASE("ratio can read a probe's bare primary field", "[rules][window]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = ratio(not api, 1m) >= 50%\n");
  Report(rules, "api", At(0s), Up());
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  Report(rules, "api", At(10s), Down());
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
}

TEST_CASE("changes counts value changes between consecutive samples", "[rules][window]") {
  RuleSet rules = MustCompile(
      "[rule t]\nwarning = changes(svc.state, 1m) >= 2\n"
      "summary = {{ changes(svc.state, 1m) }}/{{ count(svc.state, 1m) }}\n");
  const char* states[] = {"active", "active", "failed", "failed", "active"};
  for (int i = 0; i < 5; ++i) {
    Report(rules, "svc", At(std::chrono::seconds(10 * i)), Up({{"state", std::string(states[i])}}));
  }
  CHECK(rules.RenderSummary(0, At(40s)) == "2/5");
  CHECK(GradeOf(rules, "t") == Grade::kWarning);
  Report(rules, "svc", At(50s), Up());  // no state: skipped, not a change
  CHECK(rules.RenderSummary(0, At(50s)) == "2/5");
}

TEST_CASE("absent is true when a field has no fresh value", "[rules][window]") {
  CHECK(Holds("absent(api.status)", Up()) == Tri::kTrue);
  CHECK(Holds("absent(api.status)", Up({{"status", 200.0}})) == Tri::kFalse);
  CHECK(Holds("absent(api.status)", Down()) == Tri::kTrue);
  // db never reported (api keeps the rule fresh).
  CHECK(Holds("absent(db) and api", Up()) == Tri::kTrue);
  CHECK(Holds("absent(db) and api", Up(), Up()) == Tri::kFalse);
}

TEST_CASE("age is the time since a probe's last result, known even when stale", "[rules][window]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = api and age(db) > 25s\nsummary = {{ age(db) | duration }}\n");
  CHECK(rules.RenderSummary(0, At(0s)) == "n/a");  // never reported
  rules.Record("db", At(0s), Up());
  rules.Record("api", At(20s), Up());
  CHECK(EvaluateRule(rules, "t", At(20s)).grade == Grade::kExcellent);
  rules.Record("api", At(30s), Up());
  CHECK(EvaluateRule(rules, "t", At(30s)).grade == Grade::kCritical);
  CHECK(rules.RenderSummary(0, At(30s)) == "30s");
}

TEST_CASE("probe history drops samples older than its retention", "[rules][window]") {
  ProbeHistory history(1, std::chrono::seconds(30), 1000);
  for (int i = 0; i <= 100; ++i) {
    Cell* cells = history.Append(At(std::chrono::seconds(i)));
    cells[0].kind = Cell::Kind::kNumber;
    cells[0].number = i;
  }
  // 70s .. 100s are within 30s of the last append.
  REQUIRE(history.size() == 31);
  CHECK(history.time(0) == At(70s));
  CHECK(history.cells(0)[0].number == 70);
  CHECK(history.time(30) == At(100s));
  CHECK(history.capacity() <= 64);
}

TEST_CASE("probe history never holds more than its sample cap", "[rules][window]") {
  ProbeHistory history(2, std::chrono::hours(1), 16);
  for (int i = 0; i < 100; ++i) {
    Cell* cells = history.Append(At(std::chrono::milliseconds(i)));
    cells[0].kind = Cell::Kind::kNumber;
    cells[0].number = i;
    cells[1].kind = Cell::Kind::kString;
    cells[1].text = "v" + std::to_string(i);
  }
  CHECK(history.size() == 16);
  CHECK(history.capacity() == 16);
  CHECK(history.cells(0)[0].number == 84);
  CHECK(history.cells(15)[1].text == "v99");
}

TEST_CASE("a probe history of one sample keeps the latest, in one slot", "[rules][window]") {
  ProbeHistory history(2, std::chrono::seconds(2), 1);
  for (int i = 0; i < 5; ++i) {
    Cell* cells = history.Append(At(std::chrono::seconds(i)));
    cells[0].kind = Cell::Kind::kNumber;
    cells[0].number = i;
    cells[1].kind = Cell::Kind::kString;
    cells[1].text = "v" + std::to_string(i);
  }
  CHECK(history.size() == 1);
  CHECK(history.capacity() == 1);
  CHECK(history.time(0) == At(4s));
  CHECK(history.cells(0)[0].number == 4);
  CHECK(history.cells(0)[1].text == "v4");
}

TEST_CASE("a probe no window reads grades on its latest result", "[rules][window]") {
  // Its history keeps one sample (RuleSet::Compile): references, absent() and age() read
  // the latest result, and each new one replaces the last.
  std::vector<ProbeDeclaration> probes = {{"api", "http", std::chrono::seconds(1), {"p", 1}}};
  auto rules = CompileRules(R"(
[rule t]
critical = api.status >= 500
warning  = absent(api.json.version)
)",
                            probes);
  INFO((rules.ok() ? std::string() : rules.error().message));
  REQUIRE(rules.ok());
  auto report = [&](int status, bool with_version, std::chrono::milliseconds at) {
    ProbeResult result = Up();
    result.fields["status"] = static_cast<double>(status);
    if (with_version) result.fields["json.version"] = std::string("1.2");
    rules->Record("api", At(at), result);
    return EvaluateRule(*rules, "t", At(at)).grade;
  };
  CHECK(report(200, true, 1000ms) == Grade::kExcellent);
  CHECK(report(503, true, 2000ms) == Grade::kCritical);
  CHECK(report(200, false, 3000ms) == Grade::kWarning);
  CHECK(report(200, true, 4000ms) == Grade::kExcellent);
  CHECK(report(200, true, 4500ms) == Grade::kExcellent);
  CHECK(report(500, false, 5000ms) == Grade::kCritical);
}

TEST_CASE("a rule's windows keep enough history on a fast probe", "[rules][window]") {
  std::vector<ProbeDeclaration> probes = {{"api", "http", std::chrono::seconds(1), {"p", 1}}};
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = count(api.latency, 10m) < 600\n"
      "summary = {{ count(api.latency, 10m) }}\n",
      probes);
  for (int i = 0; i < 1200; ++i) rules.Record("api", At(std::chrono::seconds(i)), Up());
  CHECK(rules.RenderSummary(0, At(1199s)) == "600");
  CHECK(EvaluateRule(rules, "t", At(1199s)).grade == Grade::kExcellent);
}
