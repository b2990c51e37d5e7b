// `rollguard test FILE...`: offline rule unit tests (spec §6).
//
// A test file loads rule files, feeds probe values over simulated time and asserts grades
// and action decisions. It runs the daemon's own code: the same RuleSet evaluation (with
// `for`, `recover`, staleness), evaluated when the daemon would evaluate it (at each probe
// result, at each moment the rule's last outcome said time alone may change it, and at the
// once-a-second sweep of rules nothing else touched), and the same ActionPlanner
// (cooldowns, breakers, dependencies, dry run). There is no network, no real clock and no
// real action: simulated actions succeed at once.
//
// The test file format (INI; several [test NAME] sections per file):
//
//   [test api_rolls_back_once]
//   rules   = ../rules.d/api.rules  ; relative to the test file; repeatable, space-separated
//   config  = ../rollguard.conf     ; optional: its breakers, servers and [daemon] dry_run
//                                   ; apply; its include lines are not followed
//   at 0s   = api.up=1 api.latency=50ms api.json.state="degraded"
//   at 30s  = api=down              ; or api=silent: the probe stops reporting
//   grade 5m = api:critical db:excellent
//   actions 6m = rollback_api:executed
//
// Time starts at 0s and each probe reports at 0, interval, 2x interval, ... once an `at`
// line has named it. `at` values are rule literals: numbers, durations (as seconds),
// percents, true/false, "double quoted" strings (\" and \\ escape); an unquoted word that
// is not a number is taken as a string (svc.state=active). `PROBE=VALUE` sets the probe
// type's primary field; `PROBE.FIELD=absent` makes later results lack that field (as an
// empty PromQL vector lacks `value`). `grade T` asserts each named rule's grade after
// everything at T happened; `actions T` asserts the complete ordered list of decisions up
// to T ("" = none).
//
// Outcomes: a test passes or fails (exit 1: prints expected vs actual and a timeline of
// inputs, grade changes and action decisions). A test file that cannot be read, or a test
// that is malformed (unknown key, bad time, unknown probe, field, rule, grade, action or
// decision, missing rule file, no assertion), is an error with file:line and makes the
// exit code 2; it is neither passed nor failed.
#pragma once

#include <string>
#include <vector>

namespace rollguard {

struct RuleTestReport {
  int passed = 0;
  int failed = 0;
  int errors = 0;           // tests (or files) that could not run: malformed or unreadable
  bool unreadable = false;  // errors > 0: some input could not be read or parsed (exit 2)
  // What to print, in order: "PASS name", "FAIL name (file:line)" with the failed
  // assertions and the timeline, "ERROR file:line: ..." for malformed input.
  std::string output;
};

// Runs every [test NAME] section of every file, in order.
RuleTestReport RunRuleTests(const std::vector<std::string>& files);

}  // namespace rollguard
