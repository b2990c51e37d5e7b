// Responder: what rollguard does when a rule's grade changes.
//
// It persists rule grades and incidents, decides every action a newly entered grade names
// (through the pure ActionPlanner: pause, dependency, cooldown, breaker, dry-run), writes
// each decision to the action journal before anything runs, and runs executed actions
// on the event loop without blocking it.
//
// Crash safety: a decision is appended (and fsync'd) to actions.jsonl before the action
// starts, and state.json is replaced atomically after it. On start, journal records that
// state.json does not cover yet are replayed into the breakers, cooldowns and rule grades,
// so a kill -9 at any point neither forgets an admitted action nor runs one twice.
//
// Action types: exec (ExecRunner; `user` through setpriv), http (HttpActionRunner on the
// probes' CurlMulti), systemd (SystemdActionRunner, sd-bus on the loop). An action with
// `verify` is checked that long after it finished; if its rule is not back to warning or
// better by then, "rollback did not help" is logged and reported (OnVerifyFailed) and its
// `escalate` action is decided through the planner like any other. Pending verifies are
// saved in state.json and re-armed on start at the same wall-clock due time.
//
// Operator controls (from the control socket): Pause/Resume (persisted as paused_until),
// ResetBreaker (journaled as a record with decision "breaker_reset", replayed after a
// crash like an admission), RecordDeploy (persisted in state.json's deploys; arms
// actions with `arm`).
//
// Reconciliation after a restart: rules resume their persisted grades (RestoreGrades),
// so an incident already acted on does not act again; an incident whose rule comes back
// on its first fresh evaluation is closed and reported with `while_down = true`.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/time.h"
#include "daemon/config.h"
#include "daemon/event_log.h"
#include "daemon/observer.h"
#include "rules/rule_set.h"

typedef struct sd_event sd_event;  // NOLINT: matches <systemd/sd-event.h>

namespace rollguard {

class ProbeContext;

class Responder {
 public:
  // Opens state_dir (creating it), loads state.json and replays the journal tail.
  // Errors when the state directory cannot be used or its state is corrupt.
  // `observer` (which must outlive the responder) hears of every decision. `probes` (the
  // loop's; it must outlive the responder) lends its CurlMulti to http actions.
  static Result<std::unique_ptr<Responder>> Create(sd_event* event, ProbeContext& probes,
                                                   const Config& config, bool force_dry_run,
                                                   EventLog& log, const Clock& clock,
                                                   RuntimeObserver& observer);
  virtual ~Responder() = default;

  // Restores persisted grades into `rules` (by rule name) after a start or a reload.
  virtual void RestoreGrades(RuleSet& rules) = 0;

  // Handles one evaluation result of rule `index` at `now`.
  virtual void OnOutcome(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                         TimePoint now) = 0;

  // Takes a reloaded config: new actions and breaker policies; breaker history is kept.
  virtual void Reconfigure(const Config& config) = 0;

  // "breaker closed", "breaker open until 12:30", ... for STATUS=.
  virtual std::string BreakerSummary(TimePoint now) const = 0;

  virtual int RunningActions() const = 0;

  // Saves state that changed without an action (grade changes) to state.json. The
  // runtime calls it once a second and at shutdown.
  virtual void Flush() = 0;

  // Every breaker's state at `now`, for observers (metrics, status, notifiers).
  virtual std::vector<BreakerReport> Breakers(TimePoint now) const = 0;

  // Suppresses actions (suppressed_paused) until now + `duration`; persisted. Returns the
  // end of the pause.
  virtual Result<TimePoint> Pause(Duration duration, TimePoint now) = 0;
  // Ends a pause; false when none was in effect.
  virtual bool Resume(TimePoint now) = 0;
  // The end of the pause in effect at `now`, if any.
  virtual std::optional<TimePoint> PausedUntil(TimePoint now) const = 0;
  // Closes breaker `name` ("" or "default" = the unnamed one) by hand, journaled.
  // Errors name the breakers that exist.
  virtual Status ResetBreaker(const std::string& name, TimePoint now) = 0;
  // Records a deploy of `service` ("" = no service named) at `now`; persisted.
  virtual Status RecordDeploy(const std::string& service, const std::string& version,
                              TimePoint now) = 0;
};

}  // namespace rollguard
