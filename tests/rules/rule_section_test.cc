#include <catch2/catch.hpp>

#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

TEST_CASE("a rule section parses every key into its definition", "[rules][section]") {
  const auto rules = ParseRules(R"([rule api]
failure  = not api for 30s
critical = api.status >= 500 for 5m
critical = p95(api.latency, 5m) > 5s   ; repeatable
warning  = api.latency > 3s
good     = api.latency > 200ms
recover  = 2m
depends  = db cache
depends  = queue
on_critical = rollback_api page
on_failure  = rollback_api
on_warning  = scale_up
summary  = p95 {{ p95(api.latency, 5m) | duration }}
labels   = team=payments service=api
notify   = slack pager
no_data  = critical
)");
  REQUIRE(rules.ok());
  REQUIRE(rules->size() == 1);
  const RuleDefinition& rule = rules->front();
  CHECK(rule.name == "api");
  CHECK(rule.where.ToString() == "test.rules:1");
  REQUIRE(rule.conditions[GradeIndex(Grade::kFailure)].size() == 1);
  CHECK(rule.conditions[GradeIndex(Grade::kFailure)][0].text == "not api for 30s");
  CHECK(rule.conditions[GradeIndex(Grade::kFailure)][0].where.line == 2);
  REQUIRE(rule.conditions[GradeIndex(Grade::kCritical)].size() == 2);
  CHECK(rule.conditions[GradeIndex(Grade::kCritical)][1].text == "p95(api.latency, 5m) > 5s");
  CHECK(rule.conditions[GradeIndex(Grade::kWarning)].size() == 1);
  CHECK(rule.conditions[GradeIndex(Grade::kGood)].size() == 1);
  CHECK(rule.conditions[GradeIndex(Grade::kExcellent)].empty());
  CHECK(rule.recover == std::chrono::minutes(2));
  CHECK(rule.depends == std::vector<std::string>{"db", "cache", "queue"});
  REQUIRE(rule.depends_where.size() == 3);
  CHECK(rule.depends_where[2].line == 9);
  CHECK(rule.actions_on[GradeIndex(Grade::kCritical)] ==
        std::vector<std::string>{"rollback_api", "page"});
  CHECK(rule.actions_on[GradeIndex(Grade::kFailure)] == std::vector<std::string>{"rollback_api"});
  CHECK(rule.actions_on[GradeIndex(Grade::kWarning)] == std::vector<std::string>{"scale_up"});
  CHECK(rule.summary == "p95 {{ p95(api.latency, 5m) | duration }}");
  CHECK(rule.summary_where.line == 13);
  CHECK(rule.labels ==
        std::map<std::string, std::string>{{"team", "payments"}, {"service", "api"}});
  CHECK(rule.notify == std::vector<std::string>{"slack", "pager"});
  REQUIRE(rule.no_data.has_value());
  CHECK(*rule.no_data == Grade::kCritical);
}

TEST_CASE("a rule section without optional keys has the documented defaults", "[rules][section]") {
  const auto rules = ParseRules("[rule api]\ncritical = not api\n");
  REQUIRE(rules.ok());
  const RuleDefinition& rule = rules->front();
  CHECK(rule.recover == Duration{0});
  CHECK_FALSE(rule.no_data.has_value());
  CHECK(rule.notify.empty());
  CHECK(rule.depends.empty());
  CHECK(rule.summary.empty());
  const auto hold = ParseRules("[rule api]\nno_data = hold\n");
  REQUIRE(hold.ok());
  CHECK_FALSE(hold->front().no_data.has_value());
}

TEST_CASE("rule section errors name file, line, rule and key and say what was expected",
          "[rules][section]") {
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"[rule api]\nfialure = not api\n",
       "test.rules:2: [rule api] fialure: expected a rule key (failure, critical, warning, good, "
       "recover, depends, on_warning, on_critical, on_failure, summary, labels, notify, no_data), "
       "got \"fialure\" (unknown key)"},
      {"[rule api]\nrecover = 2 minutes\n",
       "test.rules:2: [rule api] recover: expected a duration like 250ms, 5s, 10m, 1h, 1d or "
       "1m30s, got \"2 minutes\""},
      {"[rule api]\nrecover = 1m\nrecover = 2m\n",
       "test.rules:3: [rule api] recover: expected this key once, got it again (first set at line "
       "2)"},
      {"[rule api]\ndepends = db Cache\n",
       "test.rules:2: [rule api] depends: expected rule names matching [a-z][a-z0-9_]*, got "
       "\"Cache\""},
      {"[rule api]\ndepends = api\n",
       "test.rules:2: [rule api] depends: expected other rules, got the rule itself (api)"},
      {"[rule api]\non_critical =\n",
       "test.rules:2: [rule api] on_critical: expected action names, got nothing"},
      {"[rule api]\nlabels = team\n",
       "test.rules:2: [rule api] labels: expected key=value pairs like team=payments, got "
       "\"team\""},
      {"[rule api]\nlabels = a=1 a=2\n",
       "test.rules:2: [rule api] labels: expected each label once, got \"a\" again"},
      {"[rule api]\nnotify = Slack\n",
       "test.rules:2: [rule api] notify: expected notifier names matching [a-z][a-z0-9_]*, got "
       "\"Slack\""},
      {"[rule api]\nno_data = good\n",
       "test.rules:2: [rule api] no_data: expected hold, warning, critical or failure, got "
       "\"good\""},
      {"[rule Api]\n",
       "test.rules:1: [rule Api]: expected [rule NAME] with NAME matching [a-z][a-z0-9_]*, got "
       "\"Api\""},
      {"[probe api]\n",
       "test.rules:1: [rule api]: expected a [rule NAME] section, got [probe api]"},
      {"[rule api]\ncritical =\n",
       "test.rules:2:12: [rule api] critical: expected an expression, got nothing\n    \n    ^"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    const auto rules = ParseRules(c.text);
    REQUIRE_FALSE(rules.ok());
    CHECK(rules.error().message == c.error);
  }
}

TEST_CASE("an expression error points at the column with a caret under it", "[rules][section]") {
  const auto rules = ParseRules("[rule api]\nwarning = api.latency > > 3s\n");
  REQUIRE_FALSE(rules.ok());
  CHECK(rules.error().message ==
        "test.rules:2:25: [rule api] warning: expected a number, string, probe, function call or "
        "(, got \">\"\n"
        "    api.latency > > 3s\n"
        "                  ^");
}

TEST_CASE("a summary template error points into the summary", "[rules][section]") {
  const auto rules = ParseRules("[rule api]\nsummary = p95 {{ p95(api.latency) }}\n");
  REQUIRE_FALSE(rules.ok());
  CHECK(rules.error().message ==
        "test.rules:2:33: [rule api] summary: expected , and a window duration (p95(x, 5m)), got "
        "\")\"\n"
        "    p95 {{ p95(api.latency) }}\n"
        "                          ^");
}

TEST_CASE("every error of a section is reported, one per line", "[rules][section]") {
  const auto rules = ParseRules("[rule api]\nbogus = 1\ncritical = api >\nno_data = maybe\n");
  REQUIRE_FALSE(rules.ok());
  const std::string& message = rules.error().message;
  CHECK_THAT(message, Catch::StartsWith("test.rules:2: [rule api] bogus:"));
  CHECK_THAT(message, Catch::Contains("\ntest.rules:3:17: [rule api] critical:"));
  CHECK_THAT(message, Catch::Contains("\ntest.rules:4: [rule api] no_data:"));
}

TEST_CASE("PerGrade holds only the grades given a value, read like an array", "[rules][section]") {
  PerGrade<std::vector<std::string>> actions;
  CHECK(actions.begin() == actions.end());
  CHECK(actions[GradeIndex(Grade::kCritical)].empty());
  CHECK(actions.begin() == actions.end());  // a read adds nothing

  actions.Edit(GradeIndex(Grade::kFailure)).push_back("rollback");
  actions.Edit(GradeIndex(Grade::kWarning)).push_back("scale_up");
  actions.Edit(GradeIndex(Grade::kFailure)).push_back("page");
  CHECK(actions[GradeIndex(Grade::kFailure)] == std::vector<std::string>{"rollback", "page"});
  CHECK(actions[GradeIndex(Grade::kWarning)] == std::vector<std::string>{"scale_up"});
  CHECK(actions[GradeIndex(Grade::kCritical)].empty());

  std::vector<std::string> visited;  // in grade order, whatever the order of Edit()
  for (const std::vector<std::string>& names : actions) {
    visited.insert(visited.end(), names.begin(), names.end());
  }
  CHECK(visited == std::vector<std::string>{"scale_up", "rollback", "page"});
}
