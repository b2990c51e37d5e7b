#include "daemon/rule_test_runner.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "common/ini.h"
#include "common/probe_types.h"
#include "common/strings.h"
#include "daemon/action_planner.h"
#include "daemon/config.h"

namespace rollguard {
namespace {

namespace fs = std::filesystem;

constexpr Duration kSweepInterval = std::chrono::seconds(1);  // as the daemon's sweep

struct Assertion {
  enum class Kind { kGrade, kActions } kind;
  Duration at;
  std::string expected;  // the value as written, for messages
  SourceLocation where;
};

struct ValueLine {
  Duration at;
  std::string values;
  SourceLocation where;
};

struct TestCase {
  std::string name;
  SourceLocation where;
  std::vector<std::string> rule_files;
  std::string config_file;
  std::vector<ValueLine> inputs;
  std::vector<Assertion> assertions;
};

// What one simulated probe reports from now on.
struct SimulatedProbe {
  Duration interval;
  std::string primary_field;
  bool silent = true;  // a probe no `at` line named yet does not report
  bool down = false;
  bool up = true;
  double latency = 0;
  std::map<std::string, FieldValue> fields;
};

// Rule literal -> value: percents, durations (seconds), numbers, otherwise a string.
FieldValue ParseLiteral(const std::string& text) {
  if (EndsWith(text, "%")) {
    double number = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, number);
    if (ec == std::errc() && ptr == text.data() + text.size() - 1) return number / 100.0;
  }
  double number = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc() && ptr == text.data() + text.size()) return number;
  if (text == "true") return 1.0;
  if (text == "false") return 0.0;
  if (auto duration = ParseDuration(text)) return ToSeconds(*duration);
  return text;
}

std::string Where(const SourceLocation& where) { return where.ToString() + ": "; }

// Parses "at T", "grade T", "actions T" keys.
bool ParseTimedKey(const std::string& key, std::string* verb, Duration* at) {
  const std::vector<std::string> words = SplitWords(key);
  if (words.size() != 2) return false;
  auto parsed = ParseDuration(words[1]);
  if (!parsed) return false;
  *verb = words[0];
  *at = *parsed;
  return true;
}

class Simulation {
 public:
  Simulation(Config config, std::string* log) : config_(std::move(config)), log_(log) {
    planner_.Configure(config_.breakers);
    for (const auto& probe : config_.probes) {
      SimulatedProbe simulated;
      simulated.interval = probe->spec().interval;
      const ProbeTypeInfo* info = FindProbeType(probe->spec().type);
      simulated.primary_field = info ? std::string(info->primary_field) : "up";
      probes_.emplace(probe->spec().name, simulated);
    }
    last_evaluated_.assign(config_.rules->size(), TimePoint{} - kSweepInterval);
  }

  // Applies one `at` line. Errors name the offending word.
  std::string Apply(const ValueLine& line) {
    SplitCommandResult words = SplitCommandLine(line.values);
    if (!split_ok(words)) return Where(line.where) + "expected PROBE=VALUE or PROBE.FIELD=VALUE";
    for (const std::string& word : words.argv) {
      const size_t equals = word.find('=');
      if (equals == std::string::npos || equals == 0) {
        return Where(line.where) + "expected PROBE=VALUE or PROBE.FIELD=VALUE, got \"" + word + "\"";
      }
      const std::string target = word.substr(0, equals);
      const std::string value = word.substr(equals + 1);
      const size_t dot = target.find('.');
      const std::string probe_name = target.substr(0, dot);
      auto it = probes_.find(probe_name);
      if (it == probes_.end()) {
        return Where(line.where) + "unknown probe \"" + probe_name + "\" in \"" + word + "\"";
      }
      SimulatedProbe& probe = it->second;
      std::string field = dot == std::string::npos ? probe.primary_field : target.substr(dot + 1);
      if (dot == std::string::npos && value == "down") {
        probe.silent = false;
        probe.down = true;
        continue;
      }
      if (dot == std::string::npos && value == "silent") {
        probe.silent = true;
        continue;
      }
      probe.silent = false;
      probe.down = false;
      const FieldValue parsed = ParseLiteral(value);
      const double* number = std::get_if<double>(&parsed);
      if (field == "up" || field == "latency") {
        if (number == nullptr) {
          return Where(line.where) + "expected a number for " + target + ", got \"" + value + "\"";
        }
        if (field == "up") {
          probe.up = *number != 0;
        } else {
          probe.latency = *number;
        }
      } else {
        probe.fields[field] = parsed;
      }
    }
    return "";
  }

  // Everything that happens at simulated time `t`: probe reports, then the sweep.
  void Step(Duration t) {
    const TimePoint now = TimePoint{} + t;
    for (auto& [name, probe] : probes_) {
      if (probe.silent || probe.interval.count() <= 0 || t.count() % probe.interval.count() != 0) {
        continue;
      }
      ProbeResult result;
      result.up = !probe.down && probe.up;
      result.latency_seconds = probe.latency;
      if (!probe.down) result.fields = probe.fields;
      if (!result.up) result.error = "simulated failure";
      const std::vector<size_t> readers = config_.rules->Record(name, now, result);
      for (size_t index : readers) Evaluate(index, now);
    }
    if (t.count() % kSweepInterval.count() == 0) {
      for (size_t i = 0; i < config_.rules->size(); ++i) {
        if (now - last_evaluated_[i] >= kSweepInterval) Evaluate(i, now);
      }
    }
  }

  // The largest step that lands on every probe slot and every sweep.
  Duration StepSize() const {
    int64_t step = kSweepInterval.count();
    for (const auto& [name, probe] : probes_) step = std::gcd(step, probe.interval.count());
    return Duration{std::max<int64_t>(step, 1)};
  }

  const RuleSet& rules() const { return *config_.rules; }
  const std::vector<std::string>& decisions() const { return decisions_; }

 private:
  static bool split_ok(const SplitCommandResult& split) { return split.error.empty(); }

  void Evaluate(size_t index, TimePoint now) {
    last_evaluated_[index] = now;
    const RuleOutcome outcome = config_.rules->Evaluate(index, now);
    if (!outcome.changed) return;
    const RuleDefinition& rule = config_.rules->definition(index);
    *log_ += "      " + FormatDuration(now.time_since_epoch()) + "  " + rule.name + ": " +
             (outcome.previous_known ? std::string(GradeName(outcome.previous)) : "none") +
             " -> " +
             std::string(GradeName(outcome.grade)) + " (" + outcome.reason + ")" +
             (outcome.stale ? " [stale]" : "") + "\n";
    for (const std::string& name : ActionsToConsider(rule, outcome)) {
      const ActionConfig* action = config_.FindAction(name);
      if (action == nullptr) continue;
      ActionContext context;
      context.now = now;
      context.dry_run = config_.daemon.dry_run;
      context.held_by = outcome.held_by;
      const PlannedAction plan = planner_.Decide(*action, context);
      decisions_.push_back(name + ":" + std::string(DecisionName(plan.decision)));
      *log_ += "      " + FormatDuration(now.time_since_epoch()) + "  action " +
               decisions_.back() + " (" + plan.why + ")\n";
    }
  }

  Config config_;
  std::string* log_;
  ActionPlanner planner_;
  std::map<std::string, SimulatedProbe> probes_;
  std::vector<TimePoint> last_evaluated_;
  std::vector<std::string> decisions_;
};

std::string JoinWords(const std::vector<std::string>& words) {
  std::string joined;
  for (const std::string& word : words) joined += (joined.empty() ? "" : " ") + word;
  return joined;
}

// Parses one [test NAME] section; false with *error set on malformed input.
bool ParseTestCase(const IniSection& section, const std::string& directory, TestCase* test,
                   std::string* error) {
  test->name = section.name;
  test->where = section.where;
  const std::string title = "[" + section.header + "] ";
  for (const IniEntry& entry : section.entries) {
    const std::string prefix = Where(entry.where) + title + entry.key + ": ";
    if (entry.key == "rules") {
      for (const std::string& file : SplitWords(entry.value)) {
        test->rule_files.push_back((fs::path(directory) / file).lexically_normal().string());
      }
      continue;
    }
    if (entry.key == "config") {
      test->config_file = (fs::path(directory) / entry.value).lexically_normal().string();
      continue;
    }
    std::string verb;
    Duration at{};
    if (!ParseTimedKey(entry.key, &verb, &at) ||
        (verb != "at" && verb != "grade" && verb != "actions")) {
      *error = prefix + "expected rules, config, \"at T\", \"grade T\" or \"actions T\"";
      return false;
    }
    if (verb == "at") {
      test->inputs.push_back({at, entry.value, entry.where});
    } else {
      test->assertions.push_back({verb == "grade" ? Assertion::Kind::kGrade
                                                  : Assertion::Kind::kActions,
                                  at, entry.value, entry.where});
    }
  }
  if (test->rule_files.empty()) {
    *error = Where(section.where) + title + "expected at least one \"rules = FILE\"";
    return false;
  }
  return true;
}

// Checks one grade assertion: "api:critical db:excellent". Returns a failure text or "".
std::string CheckGrades(const Assertion& assertion, const RuleSet& rules) {
  std::string failures;
  for (const std::string& pair : SplitWords(assertion.expected)) {
    const size_t colon = pair.find(':');
    const std::string rule = pair.substr(0, colon);
    const std::string expected = colon == std::string::npos ? "" : pair.substr(colon + 1);
    const auto index = rules.Find(rule);
    if (colon == std::string::npos || !ParseGrade(expected) || !index) {
      failures += "    " + Where(assertion.where) + "expected RULE:GRADE with a known rule, got \"" +
                  pair + "\"\n";
      continue;
    }
    const std::string actual(GradeName(rules.grade(*index)));
    if (actual != expected) {
      failures += "    " + Where(assertion.where) + "grade at " + FormatDuration(assertion.at) +
                  ": expected " + rule + ":" + expected + ", got " + rule + ":" + actual + "\n";
    }
  }
  return failures;
}

std::string CheckActions(const Assertion& assertion, const std::vector<std::string>& actual) {
  const std::vector<std::string> expected = SplitWords(assertion.expected);
  if (expected == actual) return "";
  return "    " + Where(assertion.where) + "actions up to " + FormatDuration(assertion.at) +
         ":\n      expected: " + (expected.empty() ? "(none)" : JoinWords(expected)) +
         "\n      actual:   " + (actual.empty() ? "(none)" : JoinWords(actual)) + "\n";
}

// Runs one test; appends its PASS/FAIL text to the report.
void RunTest(const TestCase& test, RuleTestReport* report) {
  LoadedConfig loaded = LoadRuleFiles(test.rule_files, test.config_file);
  if (!loaded.config) {
    ++report->failed;
    report->output += "FAIL " + test.name + "\n    cannot load its rules:\n" +
                      loaded.error.message + "\n";
    return;
  }
  std::string timeline;
  Simulation simulation(std::move(*loaded.config), &timeline);
  std::string failures;

  // Every instant something happens: input changes, assertions, and (up to the last of
  // those) each probe slot and sweep, which all fall on multiples of their gcd.
  Duration end{0};
  for (const ValueLine& input : test.inputs) end = std::max(end, input.at);
  for (const Assertion& assertion : test.assertions) end = std::max(end, assertion.at);
  std::vector<ValueLine> inputs = test.inputs;
  std::stable_sort(inputs.begin(), inputs.end(),
                   [](const ValueLine& a, const ValueLine& b) { return a.at < b.at; });
  std::vector<Assertion> assertions = test.assertions;
  std::stable_sort(assertions.begin(), assertions.end(),
                   [](const Assertion& a, const Assertion& b) { return a.at < b.at; });
  std::set<int64_t> instants;
  for (const ValueLine& input : inputs) instants.insert(input.at.count());
  for (const Assertion& assertion : assertions) instants.insert(assertion.at.count());
  const int64_t step = simulation.StepSize().count();
  for (int64_t t = 0; t <= end.count(); t += step) instants.insert(t);

  size_t next_input = 0;
  size_t next_assertion = 0;
  for (int64_t t : instants) {
    while (next_input < inputs.size() && inputs[next_input].at.count() <= t) {
      const std::string error = simulation.Apply(inputs[next_input++]);
      if (!error.empty()) failures += "    " + error + "\n";
    }
    simulation.Step(Duration{t});
    while (next_assertion < assertions.size() && assertions[next_assertion].at.count() <= t) {
      const Assertion& assertion = assertions[next_assertion++];
      failures += assertion.kind == Assertion::Kind::kGrade
                      ? CheckGrades(assertion, simulation.rules())
                      : CheckActions(assertion, simulation.decisions());
    }
  }
  if (failures.empty()) {
    ++report->passed;
    report->output += "PASS " + test.name + "\n";
    return;
  }
  ++report->failed;
  report->output += "FAIL " + test.name + " (" + test.where.ToString() + ")\n" + failures +
                    "    timeline:\n" + (timeline.empty() ? "      (no grade change)\n" : timeline);
}

}  // namespace

RuleTestReport RunRuleTests(const std::vector<std::string>& files) {
  RuleTestReport report;
  for (const std::string& file : files) {
    auto document = ReadIniFile(file);
    if (!document) {
      report.unreadable = true;
      report.output += document.error().message + "\n";
      continue;
    }
    const std::string directory = fs::absolute(file).parent_path().string();
    for (const IniSection& section : document->sections) {
      if (section.kind != "test" || section.name.empty()) {
        report.unreadable = true;
        report.output += Where(section.where) + "expected a [test NAME] section, got [" +
                         section.header + "]\n";
        continue;
      }
      TestCase test;
      std::string error;
      if (!ParseTestCase(section, directory, &test, &error)) {
        report.unreadable = true;
        report.output += error + "\n";
        continue;
      }
      RunTest(test, &report);
    }
  }
  return report;
}

}  // namespace rollguard
