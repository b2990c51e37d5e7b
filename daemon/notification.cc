#include "daemon/notification.h"

#include <cstdio>

namespace rollguard {
namespace {

std::string GradeText(Grade grade) { return std::string(GradeName(grade)); }

std::string PreviousText(const Notification& n) {
  return n.previous_known ? GradeText(n.previous) : "none";
}

std::string Seconds(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1fs", seconds);
  return buffer;
}

std::string BreakerText(const BreakerNote& b) {
  std::string text = "breaker " + b.name + ": ";
  if (b.open) {
    text += "open";
    if (b.open_until) text += " until " + ClockTime(*b.open_until);
    text += " (" + std::to_string(b.admitted) + " of " + std::to_string(b.max_actions) +
            " actions used)";
  } else {
    const int left = b.max_actions > b.admitted ? b.max_actions - b.admitted : 0;
    text += std::to_string(left) + " of " + std::to_string(b.max_actions) + " actions left";
  }
  return text;
}

}  // namespace

std::string_view NotificationKindName(NotificationKind kind) {
  switch (kind) {
    case NotificationKind::kGradeChanged:
      return "grade_changed";
    case NotificationKind::kResolved:
      return "resolved";
    case NotificationKind::kReminder:
      return "reminder";
    case NotificationKind::kStale:
      return "stale";
    case NotificationKind::kActionDecided:
      return "action_decided";
    case NotificationKind::kActionFinished:
      return "action_finished";
    case NotificationKind::kBreakerOpened:
      return "breaker_opened";
    case NotificationKind::kBreakerClosed:
      return "breaker_closed";
    case NotificationKind::kVerifyFailed:
      return "verify_failed";
    case NotificationKind::kReloadFailed:
      return "reload_failed";
    case NotificationKind::kReloadRecovered:
      return "reload_recovered";
  }
  return "grade_changed";
}

std::string ClockTime(TimePoint time) {
  const std::string iso = FormatIso8601(time);  // 2026-11-23T12:31:05.000Z
  return iso.size() >= 16 ? iso.substr(11, 5) + " UTC" : iso;
}

std::string DescribeAction(const ActionNote& note) {
  if (!note.result.empty()) {
    std::string text = note.action + ": " + note.result;
    if (note.exit_code && note.result != "ok")
      text += " (exit " + std::to_string(*note.exit_code) + ")";
    if (note.signal) text += " (signal " + std::to_string(*note.signal) + ")";
    if (note.duration_seconds) text += " after " + Seconds(*note.duration_seconds);
    if (!note.error.empty()) text += ": " + note.error;
    return text;
  }
  std::string text = note.action + ": ";
  if (note.decision == "executed") {
    text += "running";
  } else if (note.decision == "dry_run") {
    text += "would have run (dry run)";
  } else {
    text += note.decision;
  }
  if (!note.why.empty() && note.decision != "dry_run") text += " (" + note.why + ")";
  return text;
}

std::string NotificationTitle(const Notification& n) {
  std::string title;
  switch (n.kind) {
    case NotificationKind::kGradeChanged:
      title = n.rule + ": " + PreviousText(n) + " → " + GradeText(n.grade);
      if (n.stale) title += " (stale)";
      if (n.held_by) title += " (held by " + *n.held_by + ")";
      return title;
    case NotificationKind::kResolved:
      return n.rule + " resolved: " + PreviousText(n) + " → " + GradeText(n.grade);
    case NotificationKind::kReminder:
      return n.rule + " is still " + GradeText(n.grade) + " (since " + ClockTime(n.grade_since) +
             ")" + (n.stale ? " (stale)" : "");
    case NotificationKind::kStale:
      return n.rule + ": no fresh data, holding " + GradeText(n.grade);
    case NotificationKind::kActionDecided:
    case NotificationKind::kActionFinished: {
      if (n.actions.empty()) return n.rule + ": action";
      const ActionNote& a = n.actions.front();
      if (n.kind == NotificationKind::kActionFinished) return n.rule + ": " + DescribeAction(a);
      if (a.decision == "executed") return n.rule + ": running " + a.action;
      if (a.decision == "dry_run") return n.rule + ": " + a.action + " would have run (dry run)";
      return n.rule + ": " + a.action + " suppressed: " + (a.why.empty() ? a.decision : a.why);
    }
    case NotificationKind::kBreakerOpened: {
      if (n.breakers.empty()) return "breaker open";
      const BreakerNote& b = n.breakers.front();
      return "breaker " + b.name + " open" +
             (b.open_until ? " until " + ClockTime(*b.open_until) : std::string()) +
             ": rollbacks are suppressed";
    }
    case NotificationKind::kBreakerClosed:
      return "breaker " + (n.breakers.empty() ? std::string() : n.breakers.front().name) +
             " closed: actions are admitted again";
    case NotificationKind::kVerifyFailed:
      return n.rule + ": rollback did not help, still " + GradeText(n.grade);
    case NotificationKind::kReloadFailed:
      return "config reload rejected: the previous configuration keeps running";
    case NotificationKind::kReloadRecovered:
      return "config reloaded: the earlier reload error is fixed";
  }
  return title;
}

std::vector<std::pair<std::string, std::string>> NotificationFacts(const Notification& n) {
  std::vector<std::pair<std::string, std::string>> facts;
  if (!n.summary.empty()) facts.emplace_back("Summary", n.summary);
  if (!n.reason.empty()) facts.emplace_back("Values", n.reason);
  if (n.held_by) {
    facts.emplace_back(
        "Held by", *n.held_by + " is critical or failure: " + n.rule + "'s actions are suppressed");
  }
  if (n.stale)
    facts.emplace_back("Stale", "no fresh data: the rule holds its last grade and runs no actions");
  if (n.config_error) {
    facts.emplace_back("Configuration error",
                       "a probe reported a configuration error: no action is taken");
  }
  if (!n.actions.empty()) {
    std::string did;
    for (const ActionNote& a : n.actions) did += (did.empty() ? "" : "\n") + DescribeAction(a);
    facts.emplace_back("What rollguard did", did);
  }
  if (!n.breakers.empty()) {
    std::string budget;
    for (const BreakerNote& b : n.breakers) budget += (budget.empty() ? "" : "\n") + BreakerText(b);
    facts.emplace_back("Breaker", budget);
  }
  if (!n.error.empty()) facts.emplace_back("Error", n.error);
  if (!n.labels.empty()) {
    std::string labels;
    for (const auto& [key, value] : n.labels)
      labels += (labels.empty() ? "" : " ") + key + "=" + value;
    facts.emplace_back("Labels", labels);
  }
  return facts;
}

}  // namespace rollguard
