#include "daemon/rule_test_runner.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "common/ini.h"
#include "common/probe_types.h"
#include "common/section_reader.h"
#include "common/strings.h"
#include "daemon/action_planner.h"
#include "daemon/config.h"
#include "daemon/notification.h"
#include "daemon/notifier.h"
#include "daemon/schedule.h"
#include "daemon/state_store.h"

namespace rollguard {
namespace {

namespace fs = std::filesystem;

constexpr Duration kSweepInterval = std::chrono::seconds(1);  // as the daemon's sweep
// A test that would simulate more instants than this is refused (a typo like `grade
// 5000d` would otherwise run for hours).
constexpr int64_t kMaxInstants = 5'000'000;

// A malformed test: reported as "ERROR ..." and exit code 2, never as a failure.
struct Malformed {
  std::string message;
};

struct Assertion {
  enum class Kind { kGrade, kActions, kNotifications } kind;
  Duration at;
  std::string expected;  // the value as written
  SourceLocation where;
};

// One PROBE=VALUE or PROBE.FIELD=VALUE of an `at` line.
struct Assignment {
  std::string probe;
  std::string field;  // empty: the primary field (or down/silent)
  std::string value;
  bool quoted = false;  // "..." in the test file: always a string
  std::string word;     // as written, for messages
};

struct ValueLine {
  Duration at;
  std::string text;
  std::vector<Assignment> assignments;
  SourceLocation where;
};

// What an operator or a deploy script does at T: `deployed T = [service=S] [version=V]`,
// `pause T = DURATION`, `resume T =`.
struct ControlLine {
  enum class Kind { kDeployed, kPause, kResume } kind;
  Duration at;
  std::string service;
  std::string version;
  Duration pause{0};
  std::string text;  // as written, for the timeline
  SourceLocation where;
};

struct TestCase {
  std::string name;
  SourceLocation where;
  std::vector<std::string> rule_files;
  std::string config_file;
  std::vector<ValueLine> inputs;
  std::vector<ControlLine> controls;
  std::vector<Assertion> assertions;
};

constexpr const char* kTimedVerbs[] = {"at",       "grade", "actions", "notifications",
                                       "deployed", "pause", "resume"};

std::string Where(const SourceLocation& where) { return where.ToString() + ": "; }

// Splits an `at` value into assignments at whitespace outside double quotes.
bool SplitAssignments(const std::string& text, std::vector<Assignment>* out, std::string* error) {
  size_t i = 0;
  const auto space = [&](size_t at) {
    return std::isspace(static_cast<unsigned char>(text[at])) != 0;
  };
  while (true) {
    while (i < text.size() && space(i)) ++i;
    if (i == text.size()) return true;
    const size_t start = i;
    while (i < text.size() && !space(i) && text[i] != '=') ++i;
    if (i == text.size() || text[i] != '=' || i == start) {
      while (i < text.size() && !space(i)) ++i;
      *error = "expected PROBE=VALUE or PROBE.FIELD=VALUE, got \"" + text.substr(start, i - start) +
               "\"";
      return false;
    }
    Assignment assignment;
    const std::string target = text.substr(start, i - start);
    const size_t dot = target.find('.');
    assignment.probe = target.substr(0, dot);
    if (dot != std::string::npos) assignment.field = target.substr(dot + 1);
    ++i;  // '='
    if (i < text.size() && text[i] == '"') {
      assignment.quoted = true;
      ++i;
      bool closed = false;
      while (i < text.size()) {
        const char c = text[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < text.size() && (text[i] == '"' || text[i] == '\\')) {
          assignment.value += text[i++];
          continue;
        }
        assignment.value += c;
      }
      if (!closed) {
        *error = "expected a closing \" in \"" + text.substr(start) + "\"";
        return false;
      }
      if (i < text.size() && !space(i)) {
        *error = "expected a space after the quoted value in \"" + text.substr(start) + "\"";
        return false;
      }
    } else {
      const size_t value_start = i;
      while (i < text.size() && !space(i)) ++i;
      assignment.value = text.substr(value_start, i - value_start);
      if (assignment.value.empty()) {
        *error = "expected a value after \"" + target + "=\"";
        return false;
      }
    }
    assignment.word = text.substr(start, i - start);
    out->push_back(std::move(assignment));
  }
}

// An unquoted rule literal -> value: percents, numbers, durations (as seconds),
// true/false; a word that does not start like a number is a string (svc.state=active).
std::optional<FieldValue> ParseLiteral(const std::string& text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  double number = 0;
  if (EndsWith(text, "%")) {
    const auto [ptr, ec] = std::from_chars(begin, end - 1, number);
    if (ec == std::errc() && ptr == end - 1) return number / 100.0;
  }
  {
    const auto [ptr, ec] = std::from_chars(begin, end, number);
    if (ec == std::errc() && ptr == end) return number;
  }
  if (text == "true") return 1.0;
  if (text == "false") return 0.0;
  if (auto duration = ParseDuration(text)) return ToSeconds(*duration);
  const char first = text.front();
  if (std::isdigit(static_cast<unsigned char>(first)) || first == '-' || first == '+' ||
      first == '.') {
    return std::nullopt;  // meant as a number, but malformed: a typo, not a string
  }
  return text;
}

// Parses "at T", "grade T", "actions T" keys. An empty *verb means the key is not one.
std::optional<std::string> ParseTimedKey(const std::string& key, std::string* verb, Duration* at) {
  const std::vector<std::string> words = SplitWords(key);
  verb->clear();
  if (words.empty() || std::none_of(std::begin(kTimedVerbs), std::end(kTimedVerbs),
                                    [&](const char* known) { return words[0] == known; })) {
    return std::nullopt;
  }
  *verb = words[0];
  if (words.size() != 2) {
    return "expected \"" + words[0] + " T\" with one duration T (e.g. " + words[0] +
           " 30s), got \"" + key + "\"";
  }
  auto parsed = ParseDuration(words[1]);
  if (!parsed) return "\"" + key + "\": " + parsed.error().message;
  *at = *parsed;
  return std::nullopt;
}

bool Readable(const std::string& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return false;
  std::ifstream file(path);
  return file.good();
}

// Parses one [test NAME] section (syntax only; names are checked once the rules load).
std::optional<Malformed> ParseTestCase(const IniSection& section, const std::string& directory,
                                       TestCase* test) {
  test->name = section.name;
  test->where = section.where;
  const std::string title = "[" + section.header + "] ";
  bool has_config = false;
  for (const IniEntry& entry : section.entries) {
    const std::string prefix = Where(entry.where) + title + entry.key + ": ";
    if (entry.key == "rules" || entry.key == "config") {
      const std::vector<std::string> files = SplitWords(entry.value);
      if (files.empty() || (entry.key == "config" && files.size() != 1)) {
        return Malformed{prefix + "expected " +
                         (entry.key == "rules" ? "one or more rule files" : "one config file") +
                         " (relative to the test file), got \"" + entry.value + "\""};
      }
      if (entry.key == "config" && has_config) {
        return Malformed{prefix + "expected at most one config per test"};
      }
      for (const std::string& file : files) {
        const std::string path = (fs::path(directory) / file).lexically_normal().string();
        if (!Readable(path)) {
          return Malformed{prefix + "cannot read " + path};
        }
        if (entry.key == "rules") {
          test->rule_files.push_back(path);
        } else {
          test->config_file = path;
          has_config = true;
        }
      }
      continue;
    }
    std::string verb;
    Duration at{};
    if (auto error = ParseTimedKey(entry.key, &verb, &at)) return Malformed{prefix + *error};
    if (verb.empty()) {
      return Malformed{prefix +
                       "expected rules, config, \"at T\", \"grade T\", \"actions T\", "
                       "\"notifications T\", \"deployed T\", \"pause T\" or \"resume T\""};
    }
    if (verb == "deployed" || verb == "pause" || verb == "resume") {
      ControlLine control{ControlLine::Kind::kDeployed, at,         "", "", Duration{0},
                          verb + " " + entry.value,     entry.where};
      if (verb == "deployed") {
        for (const std::string& word : SplitWords(entry.value)) {
          if (StartsWith(word, "service=") && word.size() > 8) {
            control.service = word.substr(8);
          } else if (StartsWith(word, "version=") && word.size() > 8) {
            control.version = word.substr(8);
          } else {
            return Malformed{prefix + "expected service=NAME and/or version=V, got \"" + word +
                             "\""};
          }
        }
      } else if (verb == "pause") {
        control.kind = ControlLine::Kind::kPause;
        auto duration = ParseDuration(Trim(entry.value));
        if (!duration || duration->count() <= 0) {
          return Malformed{prefix + "expected how long to pause, e.g. 30m, got \"" + entry.value +
                           "\""};
        }
        control.pause = *duration;
      } else {
        control.kind = ControlLine::Kind::kResume;
        if (!Trim(entry.value).empty()) {
          return Malformed{prefix + "expected no value, got \"" + entry.value + "\""};
        }
      }
      test->controls.push_back(std::move(control));
      continue;
    }
    if (verb == "at") {
      ValueLine line{at, entry.value, {}, entry.where};
      std::string error;
      if (!SplitAssignments(entry.value, &line.assignments, &error)) {
        return Malformed{prefix + error};
      }
      if (line.assignments.empty()) {
        return Malformed{prefix + "expected PROBE=VALUE or PROBE.FIELD=VALUE, got nothing"};
      }
      test->inputs.push_back(std::move(line));
    } else {
      test->assertions.push_back({verb == "grade"     ? Assertion::Kind::kGrade
                                  : verb == "actions" ? Assertion::Kind::kActions
                                                      : Assertion::Kind::kNotifications,
                                  at, entry.value, entry.where});
    }
  }
  if (test->rule_files.empty()) {
    return Malformed{Where(section.where) + title +
                     "expected at least one \"rules = FILE\" (relative to the test file)"};
  }
  if (test->assertions.empty()) {
    return Malformed{Where(section.where) + title +
                     "expected at least one \"grade T = RULE:GRADE\", \"actions T = ...\" or "
                     "\"notifications T = ...\" "
                     "(a test that asserts nothing always passes)"};
  }
  return std::nullopt;
}

// [daemon] dry_run of the test's main config: LoadRuleFiles takes its breakers, not its
// [daemon] section, and a config in shadow mode decides dry_run for every action.
std::optional<Malformed> ReadGlobalDryRun(const std::string& config_file, bool* dry_run) {
  auto document = ReadIniFile(config_file);
  if (!document) return Malformed{document.error().message};
  std::vector<std::string> errors;
  for (const IniSection& section : document->sections) {
    if (section.kind != "daemon") continue;
    SectionReader reader(section, &errors);
    *dry_run = reader.Bool("dry_run", false);
  }
  if (!errors.empty()) return Malformed{errors.front()};
  return std::nullopt;
}

// "      5m30s  ": the time column of the timeline, right-aligned.
std::string TimeColumn(Duration at) {
  std::string time = FormatDuration(at);
  if (time.size() < 8) time.insert(0, 8 - time.size(), ' ');
  return "    " + time + "  ";
}

// What one simulated probe reports from now on.
struct SimulatedProbe {
  Duration interval;
  const ProbeTypeInfo* type = nullptr;
  std::string primary_field;
  bool silent = true;  // a probe no `at` line named yet does not report
  bool down = false;
  bool up = true;
  double latency = 0;
  std::map<std::string, FieldValue> fields;
};

class Simulation {
 public:
  Simulation(Config config, bool dry_run)
      : config_(std::move(config)), dry_run_(dry_run || config_.daemon.dry_run), router_("test") {
    planner_.Configure(config_.breakers);
    Notify(router_.Configure(config_, TimePoint{}), TimePoint{});
    for (const auto& probe : config_.probes) {
      SimulatedProbe simulated;
      simulated.interval = probe->spec().interval;
      simulated.type = FindProbeType(probe->spec().type);
      simulated.primary_field = simulated.type ? std::string(simulated.type->primary_field) : "up";
      probes_.emplace(probe->spec().name, simulated);
    }
    last_evaluated_.assign(config_.rules->size(), TimePoint{} - kSweepInterval);
  }

  // Checks an `at` line against the declared probes and their fields.
  std::optional<Malformed> Validate(const ValueLine& line, const std::string& prefix) const {
    for (const Assignment& assignment : line.assignments) {
      const auto it = probes_.find(assignment.probe);
      if (it == probes_.end()) {
        return Malformed{prefix + "expected a declared probe (" + ProbeNames() + "), got \"" +
                         assignment.probe + "\" in \"" + assignment.word + "\""};
      }
      const SimulatedProbe& probe = it->second;
      const std::string field = assignment.field.empty() ? probe.primary_field : assignment.field;
      const bool state = assignment.field.empty() && !assignment.quoted &&
                         (assignment.value == "down" || assignment.value == "silent");
      if (!state && probe.type != nullptr && !ProbeTypeHasField(*probe.type, field)) {
        return Malformed{prefix + "expected a field of " + std::string(probe.type->type) +
                         " probe " + assignment.probe + ", got \"" + field + "\" in \"" +
                         assignment.word + "\""};
      }
      const bool absent = !assignment.quoted && assignment.value == "absent";
      if (absent && (field == "up" || field == "latency")) {
        return Malformed{prefix + "expected a field other than up and latency to be absent " +
                         "(every result has them; use " + assignment.probe + "=down or " +
                         assignment.probe + "=silent), got \"" + assignment.word + "\""};
      }
      if (state || absent || assignment.quoted) {
        if (assignment.quoted && (field == "up" || field == "latency")) {
          return Malformed{prefix + "expected a number for " + field + ", got a string in \"" +
                           assignment.word + "\""};
        }
        continue;
      }
      const std::optional<FieldValue> value = ParseLiteral(assignment.value);
      if (!value) {
        return Malformed{prefix +
                         "expected a number, duration, percent, true/false or "
                         "\"quoted string\", got \"" +
                         assignment.value + "\" in \"" + assignment.word + "\""};
      }
      if ((field == "up" || field == "latency") && !std::holds_alternative<double>(*value)) {
        return Malformed{prefix + "expected a number for " + field + ", got \"" + assignment.value +
                         "\" in \"" + assignment.word + "\""};
      }
    }
    return std::nullopt;
  }

  // Applies one validated `at` line.
  void Apply(const ValueLine& line) {
    timeline_ += TimeColumn(line.at) + "at: " + line.text + "\n";
    for (const Assignment& assignment : line.assignments) {
      SimulatedProbe& probe = probes_.at(assignment.probe);
      if (assignment.field.empty() && !assignment.quoted) {
        if (assignment.value == "down") {
          probe.silent = false;
          probe.down = true;
          continue;
        }
        if (assignment.value == "silent") {
          probe.silent = true;
          continue;
        }
      }
      probe.silent = false;
      probe.down = false;
      const std::string field = assignment.field.empty() ? probe.primary_field : assignment.field;
      if (!assignment.quoted && assignment.value == "absent") {
        probe.fields.erase(field);  // e.g. an empty PromQL vector: no value, no min, ...
        continue;
      }
      const FieldValue value =
          assignment.quoted ? FieldValue{assignment.value} : *ParseLiteral(assignment.value);
      if (field == "up") {
        probe.up = std::get<double>(value) != 0;
      } else if (field == "latency") {
        probe.latency = std::get<double>(value);
      } else {
        probe.fields[field] = value;
      }
    }
  }

  // Applies one `deployed`, `pause` or `resume` line.
  void Apply(const ControlLine& control) {
    const TimePoint now = TimePoint{} + control.at;
    timeline_ += TimeColumn(control.at) + control.text + "\n";
    switch (control.kind) {
      case ControlLine::Kind::kDeployed:
        deploys_[control.service] = DeployRecord{control.version, now};
        break;
      case ControlLine::Kind::kPause:
        paused_until_ = now + control.pause;
        break;
      case ControlLine::Kind::kResume:
        paused_until_.reset();
        break;
    }
  }

  // Evaluates every rule whose deadline comes before `t`, each at its own deadline and in
  // time order, as the daemon's deadline timer does between probe results and sweeps.
  // An evaluation only sets deadlines later than its own, so this ends.
  void RunDeadlinesBefore(Duration t) {
    while (true) {
      const std::optional<uint64_t> due = deadlines_.NextDue();
      if (!due || *due >= static_cast<uint64_t>(t.count())) return;
      RunDeadlinesAt(Duration{static_cast<int64_t>(*due)});
    }
  }

  // Everything that happens at simulated time `t`: the rules whose deadline is `t`, then
  // probe reports, then the sweep. Deadlines come first because in the daemon the result
  // of a probe run due at `t` arrives after `t`, when the deadline timer has fired.
  void Step(Duration t) {
    const TimePoint now = TimePoint{} + t;
    RunDeadlinesAt(t);
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
      Notify(router_.OnBreakers(Breakers(now), now), now);
    }
  }

  // The largest step that lands on every probe slot and every sweep.
  Duration StepSize() const {
    int64_t step = kSweepInterval.count();
    for (const auto& [name, probe] : probes_) step = std::gcd(step, probe.interval.count());
    return Duration{std::max<int64_t>(step, 1)};
  }

  const Config& config() const { return config_; }
  const RuleSet& rules() const { return *config_.rules; }
  const std::vector<std::string>& decisions() const { return decisions_; }
  const std::vector<std::string>& notifications() const { return notifications_; }
  const std::string& timeline() const { return timeline_; }

 private:
  std::string ProbeNames() const {
    std::string names;
    for (const auto& [name, probe] : probes_) names += (names.empty() ? "" : ", ") + name;
    return names.empty() ? "none declared" : names;
  }

  // What the daemon's notifiers would send, as NOTIFIER:KIND, in order.
  void Notify(const std::vector<Delivery>& deliveries, TimePoint now) {
    for (const Delivery& delivery : deliveries) {
      notifications_.push_back(delivery.notifier + ":" +
                               std::string(NotificationKindName(delivery.notification.kind)));
      timeline_ += TimeColumn(now.time_since_epoch()) + "notify " + notifications_.back() + "\n";
    }
  }

  // The breakers as the daemon reports them to its observers.
  std::vector<BreakerReport> Breakers(TimePoint now) const {
    std::vector<BreakerReport> reports;
    for (const std::string& name : planner_.BreakerNames()) {
      reports.push_back(
          LocalBreakerReport(name.empty() ? "default" : name, *planner_.FindBreaker(name), now));
    }
    return reports;
  }

  // Evaluates the rules whose deadline is `t`, by index as the daemon takes equal ones.
  // The deadlines these evaluations set are later than `t`.
  void RunDeadlinesAt(Duration t) {
    due_rules_.clear();
    deadlines_.TakeDue(static_cast<uint64_t>(t.count()), due_rules_);
    for (size_t index : due_rules_) Evaluate(index, TimePoint{} + t);
  }

  void Evaluate(size_t index, TimePoint now) {
    last_evaluated_[index] = now;
    const RuleOutcome outcome = config_.rules->Evaluate(index, now);
    if (outcome.next_evaluation) {
      deadlines_.Set(index, static_cast<uint64_t>(ToMillis(*outcome.next_evaluation)));
    } else {
      deadlines_.Remove(index);
    }
    std::vector<JournalRecord> executed;
    if (outcome.changed) Decide(index, outcome, now, &executed);
    Notify(router_.OnRuleEvaluated(*config_.rules, index, outcome, now), now);
    // Simulated actions succeed at once.
    for (JournalRecord& record : executed) {
      record.phase = JournalPhase::kFinished;
      record.result = "ok";
      record.exit_code = 0;
      record.duration_seconds = 0;
      Notify(router_.OnActionFinished(record), now);
    }
    if (!executed.empty()) Notify(router_.OnBreakers(Breakers(now), now), now);
  }

  void Decide(size_t index, const RuleOutcome& outcome, TimePoint now,
              std::vector<JournalRecord>* executed) {
    const RuleDefinition& rule = config_.rules->definition(index);
    timeline_ += TimeColumn(now.time_since_epoch()) + rule.name + ": " +
                 (outcome.previous_known ? std::string(GradeName(outcome.previous)) : "none") +
                 " -> " + std::string(GradeName(outcome.grade)) + " (" + outcome.reason + ")" +
                 (outcome.stale ? " [stale]" : "") + "\n";
    for (const std::string& name : ActionsToConsider(rule, outcome)) {
      const ActionConfig* action = config_.FindAction(name);
      if (action == nullptr) continue;
      ActionContext context;
      context.now = now;
      context.dry_run = dry_run_;
      context.held_by = outcome.held_by;
      context.paused = paused_until_ && *paused_until_ > now;
      const auto service = rule.labels.find("service");
      const DeployRecord* deploy =
          LatestDeployFor(deploys_, service == rule.labels.end() ? "" : service->second);
      if (deploy != nullptr) context.last_deploy = deploy->time;
      PlannedAction plan = planner_.Decide(*action, context);
      // A fleet breaker is simulated as a fleet of this one daemon: its local copy decides.
      if (plan.fleet_pending) {
        const auto armed_until = plan.armed_until;
        plan = planner_.AdmitLocally(*action, now, false);
        plan.armed_until = armed_until;
      }
      decisions_.push_back(name + ":" + std::string(DecisionName(plan.decision)));
      timeline_ += TimeColumn(now.time_since_epoch()) + "action " + decisions_.back() +
                   (plan.why.empty() ? "" : " (" + plan.why + ")") + "\n";
      JournalRecord record;
      record.time = now;
      record.rule = rule.name;
      record.action = name;
      record.grade = std::string(GradeName(outcome.grade));
      record.previous_grade =
          outcome.previous_known ? std::string(GradeName(outcome.previous)) : "none";
      record.decision = std::string(DecisionName(plan.decision));
      record.reason = outcome.reason;
      record.breaker = action->breaker.empty() ? "default" : action->breaker;
      record.open_until = plan.open_until;
      Notify(router_.OnActionDecided(record, plan), now);
      if (plan.decision == ActionDecision::kExecuted) executed->push_back(record);
    }
  }

  Config config_;
  bool dry_run_;
  ActionPlanner planner_;
  std::map<std::string, SimulatedProbe> probes_;
  std::vector<TimePoint> last_evaluated_;
  // When each rule must be evaluated again without new data (ids are rule indexes), and
  // RunDeadlinesAt's batch.
  DeadlineQueue deadlines_;
  std::vector<size_t> due_rules_;
  std::vector<std::string> decisions_;
  std::vector<std::string> notifications_;
  std::map<std::string, DeployRecord> deploys_;  // service ("" = none given) -> latest
  std::optional<TimePoint> paused_until_;
  NotificationRouter router_;
  std::string timeline_;
};

std::string JoinWords(const std::vector<std::string>& words) {
  std::string joined;
  for (const std::string& word : words) joined += (joined.empty() ? "" : " ") + word;
  return joined;
}

// Checks that an assertion names known rules and grades, or known actions and decisions.
std::optional<Malformed> ValidateAssertion(const Assertion& assertion, const Config& config,
                                           const std::string& prefix) {
  for (const std::string& pair : SplitWords(assertion.expected)) {
    const size_t colon = pair.find(':');
    const std::string name = pair.substr(0, colon);
    const std::string value = colon == std::string::npos ? "" : pair.substr(colon + 1);
    if (assertion.kind == Assertion::Kind::kNotifications) {
      std::string notifiers;
      bool known_notifier = false;
      for (const NotifierConfig& notifier : config.notifiers) {
        notifiers += (notifiers.empty() ? "" : ", ") + notifier.name;
        known_notifier = known_notifier || notifier.name == name;
      }
      if (colon == std::string::npos) {
        return Malformed{prefix + "expected NOTIFIER:KIND, got \"" + pair + "\""};
      }
      if (!known_notifier) {
        return Malformed{
            prefix + "expected a notifier of the test's config (" +
            (notifiers.empty() ? "none: add config = FILE with [notifier NAME]" : notifiers) +
            "), got \"" + name + "\" in \"" + pair + "\""};
      }
      std::string kinds;
      bool known_kind = false;
      for (int k = 0; k <= static_cast<int>(NotificationKind::kReloadRecovered); ++k) {
        const std::string_view kind = NotificationKindName(static_cast<NotificationKind>(k));
        kinds += (kinds.empty() ? "" : ", ") + std::string(kind);
        known_kind = known_kind || kind == value;
      }
      if (!known_kind) {
        return Malformed{prefix + "expected a notification kind (" + kinds + "), got \"" + value +
                         "\" in \"" + pair + "\""};
      }
      continue;
    }
    if (assertion.kind == Assertion::Kind::kGrade) {
      if (colon == std::string::npos) {
        return Malformed{prefix + "expected RULE:GRADE, got \"" + pair + "\""};
      }
      if (!config.rules->Find(name)) {
        return Malformed{prefix + "expected a rule the test's rule files define, got \"" + name +
                         "\" in \"" + pair + "\""};
      }
      if (!ParseGrade(value)) {
        return Malformed{prefix +
                         "expected a grade (excellent, good, warning, critical, failure), got \"" +
                         value + "\" in \"" + pair + "\""};
      }
    } else {
      if (colon == std::string::npos) {
        return Malformed{prefix + "expected ACTION:DECISION, got \"" + pair + "\""};
      }
      if (config.FindAction(name) == nullptr) {
        return Malformed{prefix + "expected an action the test's rule files define, got \"" + name +
                         "\" in \"" + pair + "\""};
      }
      if (!ParseDecision(value)) {
        return Malformed{prefix +
                         "expected a decision (executed, dry_run, suppressed_breaker, "
                         "suppressed_cooldown, suppressed_unarmed, suppressed_paused, "
                         "suppressed_dependency, suppressed_fleet), got \"" +
                         value + "\" in \"" + pair + "\""};
      }
    }
  }
  if (assertion.kind == Assertion::Kind::kGrade && SplitWords(assertion.expected).empty()) {
    return Malformed{prefix + "expected RULE:GRADE ..., got nothing"};
  }
  return std::nullopt;
}

// Checks one grade assertion: "api:critical db:excellent". Returns a failure text or "".
std::string CheckGrades(const Assertion& assertion, const RuleSet& rules) {
  std::string failures;
  for (const std::string& pair : SplitWords(assertion.expected)) {
    const size_t colon = pair.find(':');
    const std::string rule = pair.substr(0, colon);
    const std::string expected = pair.substr(colon + 1);
    const size_t index = *rules.Find(rule);
    const std::string actual(GradeName(rules.grade(index)));
    if (actual != expected) {
      failures += "    " + Where(assertion.where) + "grade at " + FormatDuration(assertion.at) +
                  ":\n      expected: " + rule + ":" + expected + "\n      actual:   " + rule +
                  ":" + actual + (rules.stale(index) ? " (stale)" : "") + " (" +
                  rules.reason(index) + ")\n";
    }
  }
  return failures;
}

// Checks the complete ordered list of action decisions (or notifications) up to T.
std::string CheckList(const Assertion& assertion, const std::vector<std::string>& actual) {
  const std::vector<std::string> expected = SplitWords(assertion.expected);
  if (expected == actual) return "";
  const char* what = assertion.kind == Assertion::Kind::kActions ? "actions" : "notifications";
  return "    " + Where(assertion.where) + what + " up to " + FormatDuration(assertion.at) +
         ":\n      expected: " + (expected.empty() ? "(none)" : JoinWords(expected)) +
         "\n      actual:   " + (actual.empty() ? "(none)" : JoinWords(actual)) + "\n";
}

void ReportError(const std::string& message, RuleTestReport* report) {
  ++report->errors;
  report->unreadable = true;
  report->output += "ERROR " + message + "\n";
}

// Runs one test; appends its PASS/FAIL/ERROR text to the report.
void RunTest(const TestCase& test, RuleTestReport* report) {
  bool dry_run = false;
  if (!test.config_file.empty()) {
    if (auto malformed = ReadGlobalDryRun(test.config_file, &dry_run)) {
      ReportError(malformed->message, report);
      return;
    }
  }
  LoadedConfig loaded = LoadRuleFiles(test.rule_files, test.config_file);
  if (!loaded.config) {
    if (loaded.error.unreadable) {
      ReportError(loaded.error.message, report);
      return;
    }
    ++report->failed;
    report->output += "FAIL " + test.name + " (" + test.where.ToString() +
                      ")\n    its rules do not load:\n" + loaded.error.message + "\n";
    return;
  }
  Simulation simulation(std::move(*loaded.config), dry_run);
  const std::string title = "[test " + test.name + "] ";
  for (const ValueLine& input : test.inputs) {
    const std::string prefix = Where(input.where) + title + "at " + FormatDuration(input.at) + ": ";
    if (auto malformed = simulation.Validate(input, prefix)) {
      ReportError(malformed->message, report);
      return;
    }
  }
  for (const Assertion& assertion : test.assertions) {
    const std::string prefix = Where(assertion.where) + title +
                               (assertion.kind == Assertion::Kind::kGrade     ? "grade "
                                : assertion.kind == Assertion::Kind::kActions ? "actions "
                                                                              : "notifications ") +
                               FormatDuration(assertion.at) + ": ";
    if (auto malformed = ValidateAssertion(assertion, simulation.config(), prefix)) {
      ReportError(malformed->message, report);
      return;
    }
  }

  // Every instant something happens: input changes, assertions, and (up to the last of
  // those) each probe slot and sweep, which all fall on multiples of their gcd. The
  // rules' deadlines may fall anywhere: the simulation stops at each as it comes.
  Duration end{0};
  for (const ValueLine& input : test.inputs) end = std::max(end, input.at);
  for (const ControlLine& control : test.controls) end = std::max(end, control.at);
  for (const Assertion& assertion : test.assertions) end = std::max(end, assertion.at);
  const int64_t step = simulation.StepSize().count();
  if (end.count() / step > kMaxInstants) {
    ReportError(Where(test.where) + title + "expected a test of at most " +
                    std::to_string(kMaxInstants) + " simulated steps, got " +
                    std::to_string(end.count() / step) + " (up to " + FormatDuration(end) +
                    " in steps of " + FormatDuration(Duration{step}) + ")",
                report);
    return;
  }
  std::vector<ValueLine> inputs = test.inputs;
  std::stable_sort(inputs.begin(), inputs.end(),
                   [](const ValueLine& a, const ValueLine& b) { return a.at < b.at; });
  std::vector<Assertion> assertions = test.assertions;
  std::stable_sort(assertions.begin(), assertions.end(),
                   [](const Assertion& a, const Assertion& b) { return a.at < b.at; });
  std::vector<ControlLine> controls = test.controls;
  std::stable_sort(controls.begin(), controls.end(),
                   [](const ControlLine& a, const ControlLine& b) { return a.at < b.at; });
  std::set<int64_t> instants;
  for (const ValueLine& input : inputs) instants.insert(input.at.count());
  for (const ControlLine& control : controls) instants.insert(control.at.count());
  for (const Assertion& assertion : assertions) instants.insert(assertion.at.count());
  for (int64_t t = 0; t <= end.count(); t += step) instants.insert(t);

  std::string failures;
  size_t next_input = 0;
  size_t next_control = 0;
  size_t next_assertion = 0;
  for (int64_t t : instants) {
    // Between two instants the rules are evaluated at their own deadlines (a `for`
    // elapsing, a probe going stale), before anything written for the next instant.
    simulation.RunDeadlinesBefore(Duration{t});
    while (next_control < controls.size() && controls[next_control].at.count() <= t) {
      simulation.Apply(controls[next_control++]);
    }
    while (next_input < inputs.size() && inputs[next_input].at.count() <= t) {
      simulation.Apply(inputs[next_input++]);
    }
    simulation.Step(Duration{t});
    while (next_assertion < assertions.size() && assertions[next_assertion].at.count() <= t) {
      const Assertion& assertion = assertions[next_assertion++];
      switch (assertion.kind) {
        case Assertion::Kind::kGrade:
          failures += CheckGrades(assertion, simulation.rules());
          break;
        case Assertion::Kind::kActions:
          failures += CheckList(assertion, simulation.decisions());
          break;
        case Assertion::Kind::kNotifications:
          failures += CheckList(assertion, simulation.notifications());
          break;
      }
    }
  }
  if (failures.empty()) {
    ++report->passed;
    report->output += "PASS " + test.name + "\n";
    return;
  }
  ++report->failed;
  report->output += "FAIL " + test.name + " (" + test.where.ToString() + ")\n" + failures +
                    "    timeline (inputs, grade changes, action decisions, notifications):\n" +
                    simulation.timeline();
}

}  // namespace

RuleTestReport RunRuleTests(const std::vector<std::string>& files) {
  RuleTestReport report;
  for (const std::string& file : files) {
    auto document = ReadIniFile(file);
    if (!document) {
      ReportError(document.error().message, &report);
      continue;
    }
    const std::string directory = fs::absolute(file).parent_path().string();
    std::map<std::string, SourceLocation> names;
    int tests = 0;
    for (const IniSection& section : document->sections) {
      if (section.kind != "test" || section.name.empty()) {
        ReportError(
            Where(section.where) + "expected a [test NAME] section, got [" + section.header + "]",
            &report);
        continue;
      }
      ++tests;
      const auto [previous, inserted] = names.emplace(section.name, section.where);
      if (!inserted) {
        ReportError(Where(section.where) + "[" + section.header +
                        "]: expected a test name "
                        "not used before in this file (" +
                        previous->second.ToString() + ")",
                    &report);
        continue;
      }
      TestCase test;
      if (auto malformed = ParseTestCase(section, directory, &test)) {
        ReportError(malformed->message, &report);
        continue;
      }
      RunTest(test, &report);
    }
    if (tests == 0 && document->sections.empty()) {
      ReportError(file + ": expected at least one [test NAME] section", &report);
    }
  }
  return report;
}

}  // namespace rollguard
