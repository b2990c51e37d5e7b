// RuntimeObserver: what the runtime tells the parts that only watch it — metrics, the
// status API, notifiers. Every call happens on the event loop, after the fact, and must
// not block: an observer that needs IO queues it on the loop.
//
// Observers see everything through this one interface, so the runtime and the responder
// never depend on Prometheus, HTTP or Slack, and a test can record what was reported.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/probe_result.h"
#include "common/time.h"
#include "daemon/action_journal.h"
#include "daemon/action_planner.h"
#include "daemon/config.h"
#include "rules/rule_set.h"

namespace rollguard {

struct BreakerReport {
  std::string name;  // "default" for the unnamed breaker
  bool open = false;
  int admitted_in_window = 0;
  int max_actions = 0;
  std::optional<TimePoint> open_until;
  // scope = fleet: the state is Redis's (docs/fleet.md) as last read, every 5 s.
  bool fleet = false;
  std::string redis;  // host:port
  bool redis_reachable = true;
  std::string redis_error;
  std::vector<std::string> claims;  // fleet claims, newest first: who holds or ran what
};

// The report of a breaker as this daemon holds it (for a fleet breaker: its local copy).
inline BreakerReport LocalBreakerReport(std::string name, const Breaker& breaker, TimePoint now) {
  BreakerReport report;
  report.name = std::move(name);
  report.open = breaker.IsOpen(now);
  report.admitted_in_window = breaker.AdmittedInWindow(now);
  report.max_actions = breaker.policy().max_actions;
  report.open_until = breaker.OpenUntil(now);
  return report;
}

// A `verify` that failed (spec §5: "rollback did not help").
struct VerifyFailure {
  std::string rule;
  std::string action;    // the action that was verified
  std::string incident;  // the incident it ran for
  std::string grade;     // the rule's grade when the verify time ran out
  Duration verify{0};
  TimePoint action_finished;
  TimePoint now;
  std::string escalate;  // the action decided next, "" when none
};

// An incident that closed.
struct ResolvedIncident {
  std::string rule;
  std::string incident;
  TimePoint opened;
  TimePoint resolved;
  std::string grade;  // the grade the rule came back to
  bool while_down = false;
  std::vector<std::string> actions_run;
};

class RuntimeObserver {
 public:
  virtual ~RuntimeObserver() = default;

  // A configuration took effect (at start, or after a successful reload).
  virtual void OnConfigApplied(const Config& /*config*/, TimePoint /*now*/) {}
  // A reload was rejected; the previous configuration keeps running.
  virtual void OnReloadFailed(const std::string& /*error*/, TimePoint /*now*/) {}
  // A probe reported.
  virtual void OnProbeResult(const ProbeSpec& /*probe*/, const ProbeResult& /*result*/,
                             TimePoint /*now*/) {}
  // A rule was evaluated (changed or not).
  virtual void OnRuleEvaluated(const RuleSet& /*rules*/, size_t /*index*/,
                               const RuleOutcome& /*outcome*/, TimePoint /*now*/) {}
  // An action decision was taken and journaled (phase "decided"). For executed actions
  // `detected_at` is when the triggering condition first held.
  virtual void OnActionDecided(const JournalRecord& /*record*/, const PlannedAction& /*plan*/,
                               TimePoint /*detected_at*/) {}
  // An executed action finished (phase "finished").
  virtual void OnActionFinished(const JournalRecord& /*record*/) {}
  // Every breaker's state, once a second and after every decision.
  virtual void OnBreakers(const std::vector<BreakerReport>& /*breakers*/, TimePoint /*now*/) {}
  // An action with `verify` ran, and its rule was not back to warning or better within
  // the verify time: "rollback did not help". `escalate` names the action decided next
  // ("" when none is configured); its decision follows through OnActionDecided.
  virtual void OnVerifyFailed(const VerifyFailure& /*failure*/) {}
  // An incident closed: its rule came back to good or better. `while_down` is true when
  // it recovered while the daemon was not running and was closed by the first fresh
  // evaluation after a restart.
  virtual void OnIncidentResolved(const ResolvedIncident& /*incident*/) {}
  // The operator paused actions until `until`, or resumed them (nullopt).
  virtual void OnPausedChanged(std::optional<TimePoint> /*until*/, TimePoint /*now*/) {}
};

// Fans every call out to the observers added, in order.
class ObserverList final : public RuntimeObserver {
 public:
  void Add(std::shared_ptr<RuntimeObserver> observer) { observers_.push_back(std::move(observer)); }

  void OnConfigApplied(const Config& config, TimePoint now) override {
    for (auto& o : observers_) o->OnConfigApplied(config, now);
  }
  void OnReloadFailed(const std::string& error, TimePoint now) override {
    for (auto& o : observers_) o->OnReloadFailed(error, now);
  }
  void OnProbeResult(const ProbeSpec& probe, const ProbeResult& result, TimePoint now) override {
    for (auto& o : observers_) o->OnProbeResult(probe, result, now);
  }
  void OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                       TimePoint now) override {
    for (auto& o : observers_) o->OnRuleEvaluated(rules, index, outcome, now);
  }
  void OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                       TimePoint detected_at) override {
    for (auto& o : observers_) o->OnActionDecided(record, plan, detected_at);
  }
  void OnActionFinished(const JournalRecord& record) override {
    for (auto& o : observers_) o->OnActionFinished(record);
  }
  void OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now) override {
    for (auto& o : observers_) o->OnBreakers(breakers, now);
  }
  void OnVerifyFailed(const VerifyFailure& failure) override {
    for (auto& o : observers_) o->OnVerifyFailed(failure);
  }
  void OnIncidentResolved(const ResolvedIncident& incident) override {
    for (auto& o : observers_) o->OnIncidentResolved(incident);
  }
  void OnPausedChanged(std::optional<TimePoint> until, TimePoint now) override {
    for (auto& o : observers_) o->OnPausedChanged(until, now);
  }

 private:
  std::vector<std::shared_ptr<RuntimeObserver>> observers_;
};

}  // namespace rollguard
