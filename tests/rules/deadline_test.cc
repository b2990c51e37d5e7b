// RuleOutcome::next_evaluation: when time alone may change a rule's outcome, so the
// daemon can evaluate it then instead of waiting for the next probe result.
#include <catch2/catch.hpp>

#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

ProbeResult WithStatus(double status) { return Up({{"status", status}}); }

// api every `interval`; stale once 2x that has passed with no report.
std::vector<ProbeDeclaration> ApiEvery(Duration interval) {
  return {{"api", "http", interval, {"probes.conf", 1}}};
}

// Records `result` for api at `now` and evaluates rule 0 then.
RuleOutcome ReportAndEvaluate(RuleSet& rules, TimePoint now, const ProbeResult& result) {
  rules.Record("api", now, result);
  return rules.Evaluate(0, now);
}

}  // namespace

TEST_CASE("a pending for asks to be evaluated the moment it has held for D",
          "[rules][deadline][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500 for 500ms\n");
  RuleOutcome outcome = ReportAndEvaluate(rules, At(0s), WithStatus(503));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(500ms));

  // Early (a timer may fire a little early): still pending, the same moment again.
  outcome = rules.Evaluate(0, At(499ms));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(500ms));

  // At the moment: the grade changes with no new probe result.
  outcome = rules.Evaluate(0, At(500ms));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.changed);
  CHECK(outcome.condition_since == At(0s));
  // Nothing is pending any more; only staleness (10s interval: after 20s) is left.
  CHECK(outcome.next_evaluation == At(20s + 1ms));
}

TEST_CASE("a for streak that spans reports keeps the moment it started from",
          "[rules][deadline][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500 for 15s\n");
  CHECK(ReportAndEvaluate(rules, At(0s), WithStatus(503)).next_evaluation == At(15s));
  CHECK(ReportAndEvaluate(rules, At(10s), WithStatus(503)).next_evaluation == At(15s));
  const RuleOutcome outcome = rules.Evaluate(0, At(15s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.next_evaluation == At(30s + 1ms));  // stale after the 10s report
}

TEST_CASE("a false condition leaves only the moment the data goes stale",
          "[rules][deadline][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500 for 500ms\n");
  RuleOutcome outcome = ReportAndEvaluate(rules, At(0s), WithStatus(200));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(20s + 1ms));
  // Fresh up to and including 20s.
  outcome = rules.Evaluate(0, At(20s));
  CHECK_FALSE(outcome.stale);
  CHECK(outcome.next_evaluation == At(20s + 1ms));
  outcome = rules.Evaluate(0, At(20s + 1ms));
  CHECK(outcome.stale);
  CHECK_FALSE(outcome.next_evaluation.has_value());  // only new data changes it now
}

TEST_CASE("a rule that never had data has no next evaluation", "[rules][deadline][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500 for 500ms\n");
  CHECK_FALSE(rules.Evaluate(0, At(0s)).next_evaluation.has_value());
}

TEST_CASE("the earliest of several pending moments is reported", "[rules][deadline][for]") {
  RuleSet rules = MustCompile(
      "[rule t]\nfailure = api.status >= 500 for 5s\n"
      "critical = api.status >= 500 for 2s\nwarning = api.status >= 500 for 9s\n");
  CHECK(ReportAndEvaluate(rules, At(0s), WithStatus(503)).next_evaluation == At(2s));
  RuleOutcome outcome = rules.Evaluate(0, At(2s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.next_evaluation == At(5s));
  outcome = rules.Evaluate(0, At(5s));
  CHECK(outcome.grade == Grade::kFailure);
  // warning's `for` is still pending; it cannot change a failure, and asking is harmless.
  CHECK(outcome.next_evaluation == At(9s));
}

TEST_CASE("a pending recover asks to be evaluated when the better grade has held long enough",
          "[rules][deadline][recover]") {
  RuleSet rules =
      MustCompile("[rule t]\ncritical = api.status >= 500\nrecover = 1m\n", ApiEvery(5min));
  CHECK(ReportAndEvaluate(rules, At(0s), WithStatus(503)).grade == Grade::kCritical);
  RuleOutcome outcome = ReportAndEvaluate(rules, At(10s), WithStatus(200));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.next_evaluation == At(70s));
  outcome = rules.Evaluate(0, At(70s));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(10s + 10min + 1ms));  // staleness only
}

TEST_CASE("a window asks to be evaluated when its oldest sample leaves it",
          "[rules][deadline][window]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = count(api.up, 25s) >= 3\n");
  ReportAndEvaluate(rules, At(0s), Up());
  ReportAndEvaluate(rules, At(10s), Up());
  RuleOutcome outcome = ReportAndEvaluate(rules, At(20s), Up());
  CHECK(outcome.grade == Grade::kCritical);
  // Samples in (now - 25s, now]: the one at 0s leaves at 25s, before staleness at 40s.
  CHECK(outcome.next_evaluation == At(25s));
  outcome = rules.Evaluate(0, At(25s));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(35s));
}

TEST_CASE("age compared with a value asks to be evaluated when it reaches the value",
          "[rules][deadline][age]") {
  RuleSet rules = MustCompile("[rule t]\nwarning = age(api) > 15s\n");
  RuleOutcome outcome = ReportAndEvaluate(rules, At(0s), Up());
  CHECK(outcome.next_evaluation == At(15s));
  // At 15s age is exactly 15s, not more: one millisecond later it is.
  outcome = rules.Evaluate(0, At(15s));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.next_evaluation == At(15s + 1ms));
  outcome = rules.Evaluate(0, At(15s + 1ms));
  CHECK(outcome.grade == Grade::kWarning);
  CHECK(outcome.next_evaluation == At(20s + 1ms));
}

TEST_CASE("age compared with age does not chase a moment that moves with time",
          "[rules][deadline][age]") {
  RuleSet rules = MustCompile("[rule t]\nwarning = age(api) > age(db) + 1\n");
  rules.Record("db", At(0s), Up());
  rules.Record("api", At(5s), Up());
  const RuleOutcome outcome = rules.Evaluate(0, At(6s));
  CHECK(outcome.next_evaluation == At(20s + 1ms));  // db goes stale; nothing sooner
}

TEST_CASE("evaluating at every reported moment ends after a few steps, each later",
          "[rules][deadline]") {
  const char* conditions[] = {
      "critical = api.status >= 500 for 3s\nwarning = age(api) > 7s\n",
      "critical = avg(api.latency, 1m) > 0 for 4s\nrecover = 5s\n",
      "failure = ratio(api.status >= 500, 30s) > 10% for 1s\nno_data = warning\n",
      "critical = not (age(api) < 2s) and count(api.up, 15s) > 0\n",
  };
  for (const char* text : conditions) {
    INFO(text);
    RuleSet rules = MustCompile(std::string("[rule t]\n") + text);
    for (int s = 0; s <= 10; s += 5) {
      rules.Record("api", At(std::chrono::seconds(s)), WithStatus(503));
    }
    TimePoint now = At(10s);
    RuleOutcome outcome = rules.Evaluate(0, now);
    int steps = 0;
    while (outcome.next_evaluation) {
      REQUIRE(*outcome.next_evaluation > now);
      now = *outcome.next_evaluation;
      outcome = rules.Evaluate(0, now);
      REQUIRE(++steps < 20);
    }
    CHECK(outcome.stale);
  }
}
