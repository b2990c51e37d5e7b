#include <catch2/catch.hpp>

#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

// up, but without the status field: status is missing.
ProbeResult UpNoStatus() { return Up({}); }
ProbeResult WithStatus(double status, double latency = 0.05) {
  return Up({{"status", status}}, latency);
}

}  // namespace

TEST_CASE("a bare probe reads its primary field", "[rules][evaluation]") {
  CHECK(Holds("api == 1", Up()) == Tri::kTrue);
  CHECK(Holds("api == 0", Down()) == Tri::kTrue);
  CHECK(Holds("db", std::nullopt, Up()) == Tri::kTrue);  // postgres: up
  RuleSet rules = MustCompile("[rule t]\ncritical = prom > 5\nwarning = job == 1\n");
  rules.Record("prom", At(0s), Up({{"value", 7.0}}));
  CHECK(EvaluateRule(rules, "t", At(0s)).grade == Grade::kCritical);  // promql: value
  rules.Record("prom", At(10s), Up({{"value", 1.0}}));
  rules.Record("job", At(10s), Up({{"state", 1.0}}));
  CHECK(EvaluateRule(rules, "t", At(10s)).grade == Grade::kWarning);  // exec: state
}

TEST_CASE("not api is true on a probe that reported a failure and unknown on a silent one",
          "[rules][evaluation]") {
  CHECK(Holds("not api", Down()) == Tri::kTrue);
  CHECK(Holds("not api", Up()) == Tri::kFalse);
  // Only api is read and it never reported: stale, not false.
  CHECK(Holds("not api", std::nullopt) == Tri::kStale);
  // db is fresh, api is silent: the reference to api is unknown.
  CHECK(Holds("not api or not db", std::nullopt, Up()) == Tri::kUnknown);
}

TEST_CASE("a failed report carries up, latency and only the fields the probe put in it",
          "[rules][evaluation]") {
  CHECK(Holds("api.latency > 1", Down({}, 2.5)) == Tri::kTrue);
  CHECK(Holds("api.status >= 500", Down()) == Tri::kUnknown);
  CHECK(Holds("api.status >= 500", Down({{"status", 503.0}})) == Tri::kTrue);
}

TEST_CASE("a comparison with a missing field is unknown and unknown never fires",
          "[rules][evaluation]") {
  CHECK(Holds("api.status >= 500", UpNoStatus()) == Tri::kUnknown);
  CHECK(Holds("api.status < 500", UpNoStatus()) == Tri::kUnknown);
  CHECK(Holds("api.status == api.status", UpNoStatus()) == Tri::kUnknown);
  CHECK(Holds("api.status + 1 > 0", UpNoStatus()) == Tri::kUnknown);
  CHECK(Holds("-api.status < 0", UpNoStatus()) == Tri::kUnknown);
  CHECK(Holds("api.status", UpNoStatus()) == Tri::kUnknown);
}

TEST_CASE("logic with unknown is Kleene three-valued", "[rules][evaluation]") {
  const std::string u = "api.status > 0";  // unknown: no status
  const ProbeResult api = UpNoStatus();
  CHECK(Holds("not (" + u + ")", api) == Tri::kUnknown);
  CHECK(Holds(u + " or true", api) == Tri::kTrue);
  CHECK(Holds("true or " + u, api) == Tri::kTrue);
  CHECK(Holds(u + " or false", api) == Tri::kUnknown);
  CHECK(Holds(u + " and false", api) == Tri::kFalse);
  CHECK(Holds("false and " + u, api) == Tri::kFalse);
  CHECK(Holds(u + " and true", api) == Tri::kUnknown);
  CHECK(Holds(u + " or " + u, api) == Tri::kUnknown);
  CHECK(Holds(u + " and " + u, api) == Tri::kUnknown);
  // The known half of the table.
  CHECK(Holds("true and true") == Tri::kTrue);
  CHECK(Holds("true and false") == Tri::kFalse);
  CHECK(Holds("false or false") == Tri::kFalse);
  CHECK(Holds("not false") == Tri::kTrue);
}

TEST_CASE("a value is fresh until twice the probe interval has passed", "[rules][evaluation]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = not api or not db\n");
  rules.Record("api", At(0s), Down());
  rules.Record("db", At(0s), Up());
  CHECK(EvaluateRule(rules, "t", At(20s)).grade == Grade::kCritical);
  rules.Record("db", At(20s), Up());
  // api last reported 20.001s ago with a 10s interval: stale, so `not api` is unknown and
  // the rule holds critical instead of improving.
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(20001ms));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK_FALSE(outcome.stale);
  CHECK(outcome.reason ==
        "not better than critical while unknown: not api or not db (api=n/a, "
        "db=1)");
}

TEST_CASE("string fields compare with == and != only", "[rules][evaluation]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = svc.state == \"failed\"\n"
      "warning = svc.state != \"active\"\n");
  rules.Record("svc", At(0s), Up({{"state", std::string("failed")}}));
  CHECK(EvaluateRule(rules, "t", At(0s)).grade == Grade::kCritical);
  rules.Record("svc", At(10s), Up({{"state", std::string("activating")}}));
  CHECK(EvaluateRule(rules, "t", At(10s)).grade == Grade::kWarning);
  rules.Record("svc", At(20s), Up({{"state", std::string("active")}}));
  CHECK(EvaluateRule(rules, "t", At(20s)).grade == Grade::kExcellent);
}

TEST_CASE("json fields take the type of the value the probe reported", "[rules][evaluation]") {
  CHECK(Holds("api.json.status == \"ok\"", Up({{"json.status", std::string("ok")}})) == Tri::kTrue);
  CHECK(Holds("api.json.queue.depth > 100", Up({{"json.queue.depth", 150.0}})) == Tri::kTrue);
  // A number where a string was compared (or the reverse): no answer.
  CHECK(Holds("api.json.status == \"ok\"", Up({{"json.status", 1.0}})) == Tri::kUnknown);
  CHECK(Holds("api.json.depth > 1", Up({{"json.depth", std::string("x")}})) == Tri::kUnknown);
}

TEST_CASE("a promql vector that came back empty has no value", "[rules][evaluation]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = prom > 5\nwarning = prom.count == 0\n");
  rules.Record("prom", At(0s), Up({{"count", 0.0}}));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(0s));
  // warning holds, critical is unknown: worsening to warning is taken.
  CHECK(outcome.grade == Grade::kWarning);
}

TEST_CASE("the grade is the most severe level whose condition holds", "[rules][evaluation]") {
  RuleSet rules = MustCompile(R"([rule t]
failure  = api.latency > 4
critical = api.latency > 3
warning  = api.latency > 2
good     = api.latency > 1
good     = api.status == 404
)");
  const struct {
    double latency;
    double status;
    Grade grade;
  } cases[] = {
      {0.5, 200, Grade::kExcellent}, {1.5, 200, Grade::kGood},    {2.5, 200, Grade::kWarning},
      {3.5, 200, Grade::kCritical},  {4.5, 200, Grade::kFailure}, {0.5, 404, Grade::kGood},
  };
  int step = 0;
  for (const auto& c : cases) {
    INFO("latency " << c.latency << " status " << c.status);
    const TimePoint now = At(std::chrono::seconds(10 * step++));
    rules.Record("api", now, WithStatus(c.status, c.latency));
    CHECK(EvaluateRule(rules, "t", now).grade == c.grade);
  }
}

TEST_CASE("the reason names the deciding condition and the values it saw", "[rules][evaluation]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = api.latency > 3s and api.status >= 500\nwarning = api.latency > 1\n");
  rules.Record("api", At(0s), WithStatus(503, 4.2));
  RuleOutcome outcome = EvaluateRule(rules, "t", At(0s));
  CHECK(outcome.reason ==
        "api.latency > 3s and api.status >= 500 (api.latency=4.2, api.status=503)");
  CHECK(rules.reason(0) == outcome.reason);
  rules.Record("api", At(10s), WithStatus(200, 0.1));
  outcome = EvaluateRule(rules, "t", At(10s));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.reason == "no condition holds");
}

TEST_CASE("an improvement waits until every more severe condition is definitely false",
          "[rules][evaluation]") {
  RuleSet rules = MustCompile(R"([rule t]
critical = api.status >= 500
warning  = api.latency > 2
good     = api.json.backlog > 10
)");
  rules.Record("api", At(0s), WithStatus(503));
  CHECK(EvaluateRule(rules, "t", At(0s)).grade == Grade::kCritical);

  // status missing: critical is unknown, so even a true warning does not improve on it.
  rules.Record("api", At(10s), Up({}, 3.0));
  RuleOutcome outcome = EvaluateRule(rules, "t", At(10s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK_FALSE(outcome.changed);
  CHECK(outcome.reason ==
        "not better than critical while unknown: api.status >= 500 (api.status=n/a)");

  // critical definitely false, good unknown: warning/good may be taken, excellent may not.
  rules.Record("api", At(20s), WithStatus(200, 0.1));
  outcome = EvaluateRule(rules, "t", At(20s));
  CHECK(outcome.grade == Grade::kGood);
  CHECK(outcome.changed);
  CHECK(outcome.previous == Grade::kCritical);

  rules.Record("api", At(30s), Up({{"status", 200.0}, {"json.backlog", 1.0}}, 0.1));
  CHECK(EvaluateRule(rules, "t", At(30s)).grade == Grade::kExcellent);
}

TEST_CASE("worsening is immediate even on partly unknown data", "[rules][evaluation]") {
  RuleSet rules = MustCompile(
      "[rule t]\nfailure = api.status >= 500\nwarning = api.latency > 2\n"
      "recover = 10m\n");
  rules.Record("api", At(0s), Up({}, 3.0));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(0s));
  CHECK(outcome.grade == Grade::kWarning);
  CHECK(outcome.changed);
  CHECK(outcome.previous == Grade::kExcellent);
}

TEST_CASE("COND for D holds once COND was true at every evaluation for exactly D",
          "[rules][evaluation][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 1 for 30s\n");
  for (int s = 0; s < 30; s += 10) {
    rules.Record("api", At(std::chrono::seconds(s)), Up({}, 2));
    const RuleOutcome outcome = EvaluateRule(rules, "t", At(std::chrono::seconds(s)));
    INFO("at " << s << "s");
    CHECK(outcome.grade == Grade::kExcellent);
    // Pending is false, not unknown.
    CHECK(outcome.reason == "no condition holds");
  }
  rules.Record("api", At(30s), Up({}, 2));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(30s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.condition_since == At(0s));
  CHECK(outcome.reason == "api.latency > 1 for 30s (api.latency=2)");
}

TEST_CASE("a false evaluation restarts a for streak", "[rules][evaluation][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 1 for 30s\n");
  Report(rules, "api", At(0s), Up({}, 2));
  Report(rules, "api", At(10s), Up({}, 2));
  Report(rules, "api", At(20s), Up({}, 0.5));  // false: streak ends
  Report(rules, "api", At(30s), Up({}, 2));
  Report(rules, "api", At(50s), Up({}, 2));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  rules.Record("api", At(60s), Up({}, 2));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(60s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.condition_since == At(30s));
}

TEST_CASE("an unknown evaluation restarts a for streak", "[rules][evaluation][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500 for 30s\n");
  Report(rules, "api", At(0s), WithStatus(503));
  Report(rules, "api", At(10s), WithStatus(503));
  Report(rules, "api", At(20s), UpNoStatus());
  Report(rules, "api", At(30s), WithStatus(503));
  Report(rules, "api", At(40s), WithStatus(503));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  Report(rules, "api", At(60s), WithStatus(503));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
}

TEST_CASE("not api for 30s fires after 30s of failed reports", "[rules][evaluation][for]") {
  RuleSet rules = MustCompile("[rule t]\nfailure = not api for 30s\n");
  Report(rules, "api", At(0s), Down());
  Report(rules, "api", At(10s), Down());
  Report(rules, "api", At(20s), Down());
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  Report(rules, "api", At(30s), Down());
  CHECK(GradeOf(rules, "t") == Grade::kFailure);
}

TEST_CASE("condition_since is the first true evaluation of the deciding condition",
          "[rules][evaluation]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3\nwarning = api.latency > 1\n");
  Report(rules, "api", At(0s), Up({}, 2));
  Report(rules, "api", At(10s), Up({}, 2));
  rules.Record("api", At(20s), Up({}, 4));
  RuleOutcome outcome = EvaluateRule(rules, "t", At(20s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.condition_since == At(20s));
  rules.Record("api", At(30s), Up({}, 4));
  outcome = EvaluateRule(rules, "t", At(30s));
  CHECK(outcome.condition_since == At(20s));
  CHECK_FALSE(outcome.changed);
  CHECK(rules.grade_since(0) == At(20s));
}

TEST_CASE("recover holds an improving grade until it was computed for the whole duration",
          "[rules][evaluation][recover]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3\nrecover = 1m\n");
  Report(rules, "api", At(0s), Up({}, 4));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  for (int s = 10; s < 70; s += 10) {
    rules.Record("api", At(std::chrono::seconds(s)), Up({}, 0.1));
    const RuleOutcome outcome = EvaluateRule(rules, "t", At(std::chrono::seconds(s)));
    INFO("at " << s << "s");
    CHECK(outcome.grade == Grade::kCritical);
    CHECK(outcome.reason == "holding critical until excellent has held for 1m (recover)");
  }
  rules.Record("api", At(70s), Up({}, 0.1));
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(70s));
  CHECK(outcome.grade == Grade::kExcellent);  // computed since 10s: exactly 1m
  CHECK(outcome.changed);
}

TEST_CASE("a recover streak restarts when the better grade is not computed",
          "[rules][evaluation][recover]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.status >= 500\nrecover = 30s\n");
  Report(rules, "api", At(0s), WithStatus(503));
  Report(rules, "api", At(10s), WithStatus(200));
  Report(rules, "api", At(20s), WithStatus(503));  // worse again: streak over
  Report(rules, "api", At(30s), WithStatus(200));
  Report(rules, "api", At(40s), UpNoStatus());  // unknown: not computed either
  Report(rules, "api", At(50s), WithStatus(200));
  Report(rules, "api", At(70s), WithStatus(200));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  Report(rules, "api", At(80s), WithStatus(200));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
}

TEST_CASE("recover steps down through grades as each one has held long enough",
          "[rules][evaluation][recover]") {
  RuleSet rules = MustCompile(
      "[rule t]\ncritical = api.latency > 3\nwarning = api.latency > 1\nrecover = 20s\n");
  Report(rules, "api", At(0s), Up({}, 4));
  Report(rules, "api", At(10s), Up({}, 2));    // warning computed from 10s
  Report(rules, "api", At(20s), Up({}, 0.1));  // excellent computed from 20s
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  Report(rules, "api", At(30s), Up({}, 0.1));
  CHECK(GradeOf(rules, "t") == Grade::kWarning);
  Report(rules, "api", At(40s), Up({}, 0.1));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
}

TEST_CASE("a rule starts at excellent and stale until its probes report", "[rules][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = not api or not db\n");
  CHECK(rules.grade(0) == Grade::kExcellent);
  CHECK(rules.stale(0));
  CHECK(rules.reason(0) == "no fresh data from api, db");
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(5s));
  CHECK(outcome.stale);
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.reason == "no fresh data from api, db");
}

TEST_CASE("a rule holds its grade while every probe it reads is stale", "[rules][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3\n");
  Report(rules, "api", At(0s), Up({}, 4));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  RuleOutcome outcome = EvaluateRule(rules, "t", At(21s));
  CHECK(outcome.stale);
  CHECK(outcome.grade == Grade::kCritical);
  CHECK_FALSE(outcome.changed);
  CHECK(outcome.reason == "no fresh data from api");
  CHECK(rules.stale(0));
  outcome = EvaluateRule(rules, "t", At(1h));
  CHECK(outcome.grade == Grade::kCritical);
  // Data again: evaluated normally.
  rules.Record("api", At(1h), Up({}, 0.1));
  outcome = EvaluateRule(rules, "t", At(1h));
  CHECK_FALSE(outcome.stale);
  CHECK(outcome.grade == Grade::kExcellent);
}

TEST_CASE("staleness ends a for streak", "[rules][stale][for]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3 for 40s\n");
  Report(rules, "api", At(0s), Up({}, 4));
  Report(rules, "api", At(10s), Up({}, 4));
  (void)EvaluateRule(rules, "t", At(35s));  // stale
  Report(rules, "api", At(40s), Up({}, 4));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  Report(rules, "api", At(80s), Up({}, 4));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
}

TEST_CASE("no_data grades a rule whose probes are all stale", "[rules][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3\nno_data = warning\n");
  Report(rules, "api", At(0s), Up({}, 0.1));
  CHECK(GradeOf(rules, "t") == Grade::kExcellent);
  RuleOutcome outcome = EvaluateRule(rules, "t", At(25s));
  CHECK(outcome.stale);
  CHECK(outcome.grade == Grade::kWarning);
  CHECK(outcome.changed);
  CHECK(outcome.condition_since == At(25s));
  outcome = EvaluateRule(rules, "t", At(30s));
  CHECK(outcome.grade == Grade::kWarning);
  CHECK(outcome.condition_since == At(25s));
  // no_data also replaces a worse grade: it is the rule's answer to having no data.
  Report(rules, "api", At(40s), Up({}, 4));
  CHECK(GradeOf(rules, "t") == Grade::kCritical);
  CHECK(EvaluateRule(rules, "t", At(70s)).grade == Grade::kWarning);
}

TEST_CASE("a rule with one fresh probe is not stale", "[rules][stale]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = not api\nwarning = not db\n");
  Report(rules, "api", At(0s), Up());
  Report(rules, "db", At(0s), Down());
  rules.Record("api", At(30s), Up());
  const RuleOutcome outcome = EvaluateRule(rules, "t", At(30s));
  CHECK_FALSE(outcome.stale);
  // db is stale, so `not db` is unknown and warning is held.
  CHECK(outcome.grade == Grade::kWarning);
}

TEST_CASE("a dependency at critical or failure holds the dependent rule", "[rules][depends]") {
  RuleSet rules = MustCompile(R"([rule api]
critical = api.latency > 3
depends = db cache

[rule db]
critical = not db
warning = db.latency > 1

[rule cache]
failure = not prom.up
)");
  Report(rules, "db", At(0s), Up({}, 2));
  Report(rules, "prom", At(0s), Down());
  rules.Record("api", At(0s), Up({}, 4));
  RuleOutcome outcome = EvaluateRule(rules, "api", At(0s));
  CHECK(outcome.grade == Grade::kCritical);
  REQUIRE(outcome.held_by.has_value());
  CHECK(*outcome.held_by == "cache");  // db is only at warning

  Report(rules, "db", At(10s), Down());
  outcome = EvaluateRule(rules, "api", At(10s));
  REQUIRE(outcome.held_by.has_value());
  CHECK(*outcome.held_by == "db");  // the first dependency that is critical or failure

  Report(rules, "db", At(20s), Up());
  Report(rules, "prom", At(20s), Up({{"value", 1.0}}));
  outcome = EvaluateRule(rules, "api", At(20s));
  CHECK_FALSE(outcome.held_by.has_value());
}

TEST_CASE("an outcome reused for every evaluation reads as a fresh one each time",
          "[rules][evaluation]") {
  const char* text = R"([rule api]
critical = api.latency > 3
warning = api.status >= 500 for 20s
depends = db

[rule db]
critical = not db
)";
  RuleSet fresh = MustCompile(text);
  RuleSet reused = MustCompile(text);
  RuleOutcome outcome;
  auto step = [&](TimePoint now, std::optional<ProbeResult> api, std::optional<ProbeResult> db) {
    for (RuleSet* rules : {&fresh, &reused}) {
      if (db) rules->Record("db", now, *db);
      if (api) rules->Record(*rules->FindProbe("api"), now, *api);
    }
    for (const char* name : {"db", "api"}) {
      INFO(name << " at " << ToMillis(now) << "ms");
      const size_t index = *fresh.Find(name);
      const RuleOutcome expected = fresh.Evaluate(index, now);
      reused.Evaluate(index, now, &outcome);
      CHECK(outcome.grade == expected.grade);
      CHECK(outcome.previous == expected.previous);
      CHECK(outcome.previous_known == expected.previous_known);
      CHECK(outcome.changed == expected.changed);
      CHECK(outcome.stale == expected.stale);
      CHECK(outcome.reason == expected.reason);
      CHECK(outcome.condition_since == expected.condition_since);
      CHECK(outcome.held_by == expected.held_by);
      CHECK(outcome.config_error == expected.config_error);
      CHECK(outcome.next_evaluation == expected.next_evaluation);
    }
  };
  ProbeResult misconfigured = Up({{"status", 503.0}}, 4);
  misconfigured.config_error = true;
  step(At(0s), Up({{"status", 200.0}}, 0.1), Up());
  step(At(10s), misconfigured, Down());               // critical, held by db, configuration error
  step(At(20s), Up({{"status", 503.0}}, 0.1), Up());  // warning pending for 20s
  step(At(45s), Up({{"status", 503.0}}, 0.1), Up());  // warning
  step(At(2min), std::nullopt, std::nullopt);         // stale: no next evaluation
  CHECK_FALSE(outcome.next_evaluation.has_value());
  CHECK(reused.FindProbe("db") == fresh.FindProbe("db"));
  CHECK_FALSE(reused.FindProbe("nope").has_value());
}

TEST_CASE("Record lists the rules reading a probe with dependencies first", "[rules][depends]") {
  RuleSet rules = MustCompile(R"([rule top]
critical = not api
depends = middle

[rule other]
warning = not db

[rule middle]
critical = api.latency > 1
depends = bottom

[rule bottom]
critical = api.latency > 5
)");
  const std::vector<size_t> readers = rules.Record("api", At(0s), Up());
  std::vector<std::string> names;
  for (size_t index : readers) names.push_back(rules.definition(index).name);
  CHECK(names == std::vector<std::string>{"bottom", "middle", "top"});
  CHECK(rules.Record("nope", At(0s), Up()).empty());
  CHECK(rules.ProbesRead(*rules.Find("other")) == std::vector<std::string>{"db"});
}

TEST_CASE("a probe's configuration error is reported on the rules that read it",
          "[rules][evaluation]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = prom > 1\n");
  ProbeResult bad = Down();
  bad.config_error = true;
  rules.Record("prom", At(0s), bad);
  CHECK(EvaluateRule(rules, "t", At(0s)).config_error);
  rules.Record("prom", At(10s), Up({{"value", 0.0}}));
  CHECK_FALSE(EvaluateRule(rules, "t", At(10s)).config_error);
}

TEST_CASE("a restored grade holds until the probes report again", "[rules][snapshot]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = api.latency > 3\nrecover = 0s\n");
  rules.Restore(0, RuleSnapshot{Grade::kCritical, At(-5min)});
  CHECK(rules.Snapshot(0).grade == Grade::kCritical);
  CHECK(rules.Snapshot(0).since == At(-5min));
  CHECK(rules.stale(0));
  RuleOutcome outcome = EvaluateRule(rules, "t", At(10s));
  CHECK(outcome.grade == Grade::kCritical);
  CHECK(outcome.stale);
  CHECK_FALSE(outcome.changed);
  rules.Record("api", At(20s), Up({}, 0.1));
  outcome = EvaluateRule(rules, "t", At(20s));
  CHECK(outcome.grade == Grade::kExcellent);
  CHECK(outcome.changed);
  CHECK(rules.Snapshot(0).since == At(20s));
}
