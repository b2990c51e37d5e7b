// `rollguard test FILE...`: offline rule unit tests (spec §6).
//
// A test file loads rule files, feeds probe values over simulated time and asserts grades
// and action decisions. It runs the daemon's own code: the same RuleSet evaluation (with
// `for`, `recover`, staleness), the same once-a-second sweep of rules no probe touched,
// and the same ActionPlanner (cooldowns, breakers). There is no network, no real clock and
// no real action: simulated actions succeed at once.
#pragma once

#include <string>
#include <vector>

namespace rollguard {

struct RuleTestReport {
  int passed = 0;
  int failed = 0;
  bool unreadable = false;  // a test file could not be read or parsed (exit code 2)
  std::string output;       // what to print: PASS/FAIL lines, failures with timelines
};

// Runs every [test NAME] section of every file.
RuleTestReport RunRuleTests(const std::vector<std::string>& files);

}  // namespace rollguard
