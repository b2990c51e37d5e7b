#include "daemon/action_planner.h"

#include <array>

namespace rollguard {
namespace {

constexpr std::array<std::pair<ActionDecision, std::string_view>, 8> kDecisionNames = {{
    {ActionDecision::kExecuted, "executed"},
    {ActionDecision::kDryRun, "dry_run"},
    {ActionDecision::kSuppressedBreaker, "suppressed_breaker"},
    {ActionDecision::kSuppressedCooldown, "suppressed_cooldown"},
    {ActionDecision::kSuppressedUnarmed, "suppressed_unarmed"},
    {ActionDecision::kSuppressedPaused, "suppressed_paused"},
    {ActionDecision::kSuppressedDependency, "suppressed_dependency"},
    {ActionDecision::kSuppressedFleet, "suppressed_fleet"},
}};

std::string BreakerLabel(std::string_view name) {
  return name.empty() ? "breaker" : "breaker " + std::string(name);
}

}  // namespace

std::string_view DecisionName(ActionDecision decision) {
  for (const auto& [value, name] : kDecisionNames) {
    if (value == decision) return name;
  }
  return "unknown";
}

std::optional<ActionDecision> ParseDecision(std::string_view name) {
  for (const auto& [value, known] : kDecisionNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

std::vector<std::string> ActionsToConsider(const RuleDefinition& rule, const RuleOutcome& outcome,
                                           std::string* why_not) {
  if (why_not != nullptr) why_not->clear();
  if (!outcome.changed) return {};
  const std::vector<std::string>& named = rule.actions_on[GradeIndex(outcome.grade)];
  if (named.empty()) return {};
  if (outcome.stale) {
    if (why_not != nullptr) *why_not = "stale: no action runs on data rollguard does not have";
    return {};
  }
  if (outcome.config_error) {
    if (why_not != nullptr) *why_not = "a probe it reads has a configuration error";
    return {};
  }
  return named;
}

void ActionPlanner::Configure(const std::vector<BreakerConfig>& breakers) {
  std::map<std::string, Breaker, std::less<>> configured;
  fleet_breakers_.clear();
  for (const BreakerConfig& config : breakers) {
    if (config.fleet) fleet_breakers_.insert(config.name);
    auto existing = breakers_.find(config.name);
    Breaker breaker(config.policy);
    if (existing != breakers_.end()) {
      breaker = Breaker::FromState(config.policy, existing->second.State());
    }
    configured.emplace(config.name, std::move(breaker));
  }
  breakers_ = std::move(configured);
}

Breaker& ActionPlanner::BreakerFor(std::string_view name) {
  auto it = breakers_.find(name);
  if (it == breakers_.end())
    it = breakers_.emplace(std::string(name), Breaker(BreakerPolicy{})).first;
  return it->second;
}

PlannedAction ActionPlanner::Decide(const ActionConfig& action, const ActionContext& context) {
  PlannedAction plan;
  plan.breaker = action.breaker;
  if (context.paused) {
    plan.decision = ActionDecision::kSuppressedPaused;
    plan.why = "rollguard is paused";
    return plan;
  }
  if (context.held_by) {
    plan.decision = ActionDecision::kSuppressedDependency;
    plan.why = "held by " + *context.held_by;
    return plan;
  }
  if (action.arm) {
    if (!context.last_deploy) {
      plan.decision = ActionDecision::kSuppressedUnarmed;
      plan.why = "not armed: no deploy recorded (arm = " + FormatDuration(*action.arm) + ")";
      return plan;
    }
    plan.armed_until = *context.last_deploy + *action.arm;
    // A deploy stamped after `now` (clock step) still arms: it is the latest deploy.
    if (context.now >= *plan.armed_until) {
      plan.decision = ActionDecision::kSuppressedUnarmed;
      plan.why = "not armed: the last deploy was at " + FormatIso8601(*context.last_deploy) +
                 ", the arm window of " + FormatDuration(*action.arm) + " ended at " +
                 FormatIso8601(*plan.armed_until);
      return plan;
    }
  }
  if (auto ready = cooldowns_.BlockedUntil(action.name, context.now, action.cooldown)) {
    plan.decision = ActionDecision::kSuppressedCooldown;
    plan.cooldown_until = ready;
    plan.why = "action cooldown until " + FormatIso8601(*ready);
    return plan;
  }
  const bool dry_run = context.dry_run || action.dry_run;
  if (!dry_run && fleet_breakers_.count(action.breaker) > 0) {
    // Only the fleet's Redis can say whether this one is admitted (and claimed).
    plan.fleet_pending = true;
    plan.why = "asking fleet " + BreakerLabel(action.breaker);
    return plan;
  }
  PlannedAction admitted = AdmitLocally(action, context.now, dry_run);
  admitted.armed_until = plan.armed_until;
  return admitted;
}

PlannedAction ActionPlanner::AdmitLocally(const ActionConfig& action, TimePoint now, bool dry_run) {
  PlannedAction plan;
  plan.breaker = action.breaker;
  Breaker& breaker = BreakerFor(action.breaker);
  // A dry run asks a copy, so shadow mode consumes no budget of the real breaker.
  Breaker probe_copy = breaker;
  Breaker& consulted = dry_run ? probe_copy : breaker;
  const Breaker::Decision admission = consulted.TryAdmit(now);
  if (!admission.admitted) {
    plan.decision = ActionDecision::kSuppressedBreaker;
    plan.open_until = admission.open_until;
    plan.why = BreakerLabel(action.breaker) + " open until " +
               (admission.open_until ? FormatIso8601(*admission.open_until) : "reset");
    return plan;
  }
  if (dry_run) {
    plan.decision = ActionDecision::kDryRun;
    plan.why = "dry run: would have run";
    return plan;
  }
  cooldowns_.Record(action.name, now);
  plan.decision = ActionDecision::kExecuted;
  plan.why = "admitted by " + BreakerLabel(action.breaker);
  return plan;
}

PlannedAction ActionPlanner::CompleteFleet(const ActionConfig& action, TimePoint now,
                                           const FleetVerdict& verdict, bool fail_open) {
  PlannedAction plan;
  plan.breaker = action.breaker;
  const std::string label = "fleet " + BreakerLabel(action.breaker);
  switch (verdict.kind) {
    case FleetVerdict::Kind::kAdmitted:
      // Mirrored locally: status between refreshes, and fail_open, see what Redis saw.
      ReplayExecuted(action.name, action.breaker, now);
      plan.decision = ActionDecision::kExecuted;
      plan.why = "admitted by " + label + " (" + std::to_string(verdict.admitted_in_window) +
                 " in its window)";
      return plan;
    case FleetVerdict::Kind::kBreakerOpen:
      plan.decision = ActionDecision::kSuppressedBreaker;
      plan.open_until = verdict.open_until;
      plan.why = label + " open until " +
                 (verdict.open_until ? FormatIso8601(*verdict.open_until) : "reset");
      return plan;
    case FleetVerdict::Kind::kClaimed: {
      plan.decision = ActionDecision::kSuppressedFleet;
      std::string state = verdict.holder_result.empty() ? "unknown" : verdict.holder_result;
      if (state == "running" && verdict.lease_until && *verdict.lease_until < verdict.now) {
        state = "lease lost: it stopped renewing at " + FormatIso8601(*verdict.lease_until);
      }
      plan.why = "claimed by " + verdict.holder + " (" + state + ")";
      return plan;
    }
    case FleetVerdict::Kind::kUnreachable:
      break;
  }
  if (fail_open) {
    PlannedAction local = AdmitLocally(action, now, false);
    local.why = label + " unreachable (" + verdict.error + "); fail_open: " + local.why;
    return local;
  }
  plan.decision = ActionDecision::kSuppressedFleet;
  plan.why = label + " unreachable (" + verdict.error + "); fail closed";
  return plan;
}

void ActionPlanner::ReplayExecuted(std::string_view action, std::string_view breaker,
                                   TimePoint at) {
  // The journal says it was admitted then, so it counts whatever the breaker would say now.
  Breaker& replayed = BreakerFor(breaker);
  BreakerState state = replayed.State();
  state.admitted.push_back(at);
  Breaker restored = Breaker::FromState(replayed.policy(), state);
  if (restored.AdmittedInWindow(at) >= replayed.policy().max_actions &&
      (!state.opened_at || *state.opened_at < at)) {
    state.opened_at = at;
    restored = Breaker::FromState(replayed.policy(), state);
  }
  replayed = restored;
  const std::string name(action);
  const auto last = cooldowns_.LastRuns().find(name);
  if (last == cooldowns_.LastRuns().end() || last->second < at) cooldowns_.Record(name, at);
}

bool ActionPlanner::ResetBreaker(std::string_view name, TimePoint now) {
  auto it = breakers_.find(name);
  if (it == breakers_.end()) return false;
  it->second.Reset(now);
  return true;
}

std::map<std::string, BreakerState> ActionPlanner::BreakerStates() const {
  std::map<std::string, BreakerState> states;
  for (const auto& [name, breaker] : breakers_) states.emplace(name, breaker.State());
  return states;
}

void ActionPlanner::RestoreBreakerStates(const std::map<std::string, BreakerState>& states) {
  for (auto& [name, breaker] : breakers_) {
    if (auto it = states.find(name); it != states.end()) {
      breaker = Breaker::FromState(breaker.policy(), it->second);
    }
  }
}

const Breaker* ActionPlanner::FindBreaker(std::string_view name) const {
  auto it = breakers_.find(name);
  return it == breakers_.end() ? nullptr : &it->second;
}

std::vector<std::string> ActionPlanner::BreakerNames() const {
  std::vector<std::string> names;
  for (const auto& [name, breaker] : breakers_) names.push_back(name);
  return names;
}

}  // namespace rollguard
