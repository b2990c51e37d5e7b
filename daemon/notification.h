// Notification: what one message to a notifier is about, as plain data.
//
// The notifier (daemon/notifier.h) decides which notifications each notifier gets; the
// pure builders in slack_format.h and alertmanager_format.h turn one into a payload.
// Nothing here holds a secret: URLs stay in NotifierConfig.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"
#include "rules/grade.h"

namespace rollguard {

enum class NotificationKind {
  kGradeChanged,     // a rule entered a grade at or above the notifier's min_grade
  kResolved,         // a rule went back below min_grade (or was removed by a reload)
  kReminder,         // a rule is still at or above min_grade after `repeat`
  kStale,            // a rule at or above min_grade has no fresh data any more
  kActionDecided,    // an action decision not told with a grade change (suppressed, ...)
  kActionFinished,   // an executed action finished: ok, failed or timeout
  kBreakerOpened,    // a breaker refuses actions
  kBreakerClosed,    // a breaker admits actions again
  kVerifyFailed,     // an action did not bring its rule back in time
  kReloadFailed,     // SIGHUP found a broken config; the previous one keeps running
  kReloadRecovered,  // a config applied after a failed reload
};

// "grade_changed", "resolved", ... (logs and tests).
std::string_view NotificationKindName(NotificationKind kind);

// One action decision or result: what rollguard did.
struct ActionNote {
  TimePoint time;
  std::string rule;
  std::string action;
  std::string grade;           // the grade its rule entered
  std::string previous_grade;  // the one it left ("none" before data)
  std::string decision;        // executed | dry_run | suppressed_* (spec §6 names)
  std::string why;             // "breaker open until 12:31", "held by db", ...
  std::string incident;
  std::string breaker;  // "default" for the unnamed breaker
  std::optional<TimePoint> open_until;
  // kActionFinished only.
  std::string result;  // ok | failed | timeout
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::optional<double> duration_seconds;
  std::string error;
};

// A breaker's budget as the notification shows it.
struct BreakerNote {
  std::string name;  // "default" for the unnamed breaker
  bool open = false;
  int admitted = 0;
  int max_actions = 0;
  std::optional<TimePoint> open_until;
};

struct Notification {
  NotificationKind kind = NotificationKind::kGradeChanged;
  TimePoint time;
  std::string host;  // the machine rollguard runs on (alert label `instance`)

  // Rule events (grade, resolution, reminder, stale, actions, verify).
  std::string rule;
  Grade grade = Grade::kExcellent;
  Grade previous = Grade::kExcellent;
  bool previous_known = true;      // false: `previous` is only the starting value ("none")
  TimePoint grade_since;           // when the rule entered `grade`
  TimePoint previous_since;        // when it entered `previous`
  bool alerting = false;           // `grade` is at or above the notifier's min_grade
  bool previous_alerting = false;  // `previous` was
  bool stale = false;
  std::string reason;   // RuleOutcome::reason: the probe values behind the grade
  std::string summary;  // the rule's rendered summary ("" when it has none)
  std::optional<std::string> held_by;
  bool config_error = false;
  std::map<std::string, std::string> labels;  // the rule's labels
  // What rollguard did: the decisions of a grade change, or the one action of an action
  // event.
  std::vector<ActionNote> actions;
  // Budgets of the breakers involved (the rule's actions' breakers, or the breaker event's).
  std::vector<BreakerNote> breakers;

  std::string error;  // kReloadFailed: the errors, kVerifyFailed: what was seen
};

// "12:31 UTC": how notifications show a time of day.
std::string ClockTime(TimePoint time);

// One line saying what happened, e.g. "api: warning → critical",
// "api resolved: critical → good", "breaker default open until 12:31 UTC". Used as
// Slack's fallback text and header, and as the alert summary when a rule has none.
std::string NotificationTitle(const Notification& notification);

// The facts behind it, as (heading, text) pairs in display order; pairs with nothing to
// say are left out. Headings: "Summary", "Values", "Held by", "Stale", "Configuration
// error", "What rollguard did", "Breaker", "Error", "Labels".
std::vector<std::pair<std::string, std::string>> NotificationFacts(
    const Notification& notification);

// One line per action note: "rollback_api: running (admitted by breaker default)",
// "rollback_api: suppressed_breaker (breaker open until ...)", "rollback_api: ok after 1.2s".
std::string DescribeAction(const ActionNote& note);

}  // namespace rollguard
