// ActionPlanner: decides, purely and with time as a value, what happens to one action a
// rule's newly entered grade names (spec §5).
//
// Checks, in this order, the first that refuses wins:
//   paused (maintenance)        -> suppressed_paused
//   a dependency is critical    -> suppressed_dependency
//   `arm = D` and no deploy of the rule's service within D before now
//                               -> suppressed_unarmed
//   the action's own cooldown   -> suppressed_cooldown
//   a fleet breaker (not dry)   -> fleet_pending: the fleet's Redis decides; the caller
//                                  sends the admission and passes the verdict to
//                                  CompleteFleet() (executed, suppressed_breaker,
//                                  suppressed_fleet; see daemon/fleet_breaker.h)
//   the action's breaker        -> suppressed_breaker (with the time it opens again)
//   dry run (global or action)  -> dry_run: decided and journaled, never executed; it
//                                  consumes neither the cooldown nor the breaker
//   otherwise                   -> executed: admitted by the breaker, cooldown started
// The same planner serves the daemon and `rollguard test`, so what a rule unit test
// asserts is what the daemon does.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"
#include "daemon/breaker.h"
#include "daemon/config.h"
#include "daemon/fleet_breaker.h"
#include "rules/grade.h"
#include "rules/rule_set.h"

namespace rollguard {

enum class ActionDecision {
  kExecuted,
  kDryRun,
  kSuppressedBreaker,
  kSuppressedCooldown,
  kSuppressedUnarmed,
  kSuppressedPaused,
  kSuppressedDependency,
  kSuppressedFleet,
};

// "executed", "dry_run", "suppressed_breaker", ... as in actions.jsonl and metrics.
std::string_view DecisionName(ActionDecision decision);
std::optional<ActionDecision> ParseDecision(std::string_view name);

// The facts of the moment an action is considered.
struct ActionContext {
  TimePoint now;
  bool paused = false;
  bool dry_run = false;                // global: [daemon] dry_run or --dry-run
  std::optional<std::string> held_by;  // a dependency rule at critical or failure
  // The latest recorded deploy that arms this rule's actions: of the rule's `service`
  // label, or of any service when it has none (see docs/actions.md). Only consulted for
  // actions with `arm`.
  std::optional<TimePoint> last_deploy;
};

struct PlannedAction {
  ActionDecision decision = ActionDecision::kExecuted;
  std::string breaker;                      // the breaker consulted ("" = default)
  std::optional<TimePoint> open_until;      // for suppressed_breaker
  std::optional<TimePoint> cooldown_until;  // for suppressed_cooldown
  std::optional<TimePoint> armed_until;     // actions with `arm`: end of the deploy window
  std::string why;  // one human sentence: "breaker open until 12:31", "held by db", ...
  // Not decided yet: the action's breaker is a fleet breaker, whose Redis decides.
  bool fleet_pending = false;
};

// The action names an evaluation asks to consider: those of a grade the rule has just
// entered, on fresh data without configuration errors. Empty otherwise, with `why_not`
// (when given) saying why a named action is not considered ("" when none is named).
std::vector<std::string> ActionsToConsider(const RuleDefinition& rule, const RuleOutcome& outcome,
                                           std::string* why_not = nullptr);

class ActionPlanner {
 public:
  // Takes the breaker policies of a (re)loaded config. History of breakers that keep
  // their name survives; a changed policy applies to that history.
  void Configure(const std::vector<BreakerConfig>& breakers);

  // Decides and, for kExecuted, records the admission and starts the cooldown.
  PlannedAction Decide(const ActionConfig& action, const ActionContext& context);

  // The decision for a fleet_pending plan, from its fleet breaker's verdict. Admitted:
  // cooldown started and the admission mirrored in the local copy of the breaker.
  // Unreachable: suppressed_fleet (fail closed), or with `fail_open` the local copy decides.
  PlannedAction CompleteFleet(const ActionConfig& action, TimePoint now,
                              const FleetVerdict& verdict, bool fail_open);

  // The local breaker's decision (the last step of Decide()): `rollguard test` uses it
  // for fleet breakers too, simulating one daemon.
  PlannedAction AdmitLocally(const ActionConfig& action, TimePoint now, bool dry_run);

  // Replays an execution that was journaled (after a crash): admission + cooldown.
  void ReplayExecuted(std::string_view action, std::string_view breaker, TimePoint at);

  // Closes a breaker by hand. False when no breaker has that name.
  bool ResetBreaker(std::string_view breaker, TimePoint now);

  // Persistence.
  std::map<std::string, BreakerState> BreakerStates() const;
  void RestoreBreakerStates(const std::map<std::string, BreakerState>& states);
  const std::map<std::string, TimePoint>& LastRuns() const { return cooldowns_.LastRuns(); }
  void RestoreLastRuns(std::map<std::string, TimePoint> last_runs) {
    cooldowns_ = ActionCooldowns(std::move(last_runs));
  }

  const Breaker* FindBreaker(std::string_view name) const;
  std::vector<std::string> BreakerNames() const;

 private:
  Breaker& BreakerFor(std::string_view name);

  std::map<std::string, Breaker, std::less<>> breakers_;
  std::set<std::string, std::less<>> fleet_breakers_;
  ActionCooldowns cooldowns_;
};

}  // namespace rollguard
