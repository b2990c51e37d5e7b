#include "daemon/action_planner.h"

#include <catch2/catch.hpp>

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

ActionConfig Rollback(Duration cooldown = 0s, std::string breaker = "") {
  ActionConfig action;
  action.name = "rollback";
  action.type = "exec";
  action.argv = {"/bin/true"};
  action.cooldown = cooldown;
  action.breaker = std::move(breaker);
  return action;
}

ActionContext At(Duration t) {
  ActionContext context;
  context.now = TimePoint{} + t;
  return context;
}

ActionPlanner DefaultPlanner() {
  ActionPlanner planner;
  planner.Configure({BreakerConfig{"", BreakerPolicy{}, {}, std::nullopt}});
  return planner;
}

}  // namespace

TEST_CASE("three rollbacks an hour run, the fourth is refused by the breaker", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  const ActionConfig action = Rollback();
  CHECK(planner.Decide(action, At(0min)).decision == ActionDecision::kExecuted);
  CHECK(planner.Decide(action, At(10min)).decision == ActionDecision::kExecuted);
  CHECK(planner.Decide(action, At(20min)).decision == ActionDecision::kExecuted);
  const PlannedAction fourth = planner.Decide(action, At(25min));
  CHECK(fourth.decision == ActionDecision::kSuppressedBreaker);
  REQUIRE(fourth.open_until.has_value());
  CHECK(*fourth.open_until > TimePoint{} + 25min);
  CHECK_THAT(fourth.why, Catch::Contains("breaker open until"));
}

TEST_CASE("an action's own cooldown refuses before the breaker is consulted", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  const ActionConfig action = Rollback(10min);
  CHECK(planner.Decide(action, At(0min)).decision == ActionDecision::kExecuted);
  const PlannedAction again = planner.Decide(action, At(9min));
  CHECK(again.decision == ActionDecision::kSuppressedCooldown);
  CHECK(again.cooldown_until == TimePoint{} + 10min);
  // The refusal consumed nothing: one admission in the breaker so far.
  CHECK(planner.FindBreaker("")->AdmittedInWindow(TimePoint{} + 9min) == 1);
  CHECK(planner.Decide(action, At(10min)).decision == ActionDecision::kExecuted);
}

TEST_CASE("pause and dependencies suppress before anything else", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  ActionContext paused = At(0s);
  paused.paused = true;
  CHECK(planner.Decide(Rollback(), paused).decision == ActionDecision::kSuppressedPaused);
  ActionContext held = At(0s);
  held.held_by = "db";
  const PlannedAction plan = planner.Decide(Rollback(), held);
  CHECK(plan.decision == ActionDecision::kSuppressedDependency);
  CHECK(plan.why == "held by db");
  CHECK(planner.FindBreaker("")->AdmittedInWindow(TimePoint{}) == 0);
}

TEST_CASE("a dry run is decided but consumes neither breaker nor cooldown", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  ActionConfig action = Rollback(10min);
  action.dry_run = true;
  for (int i = 0; i < 5; ++i) {
    CHECK(planner.Decide(action, At(std::chrono::minutes(i))).decision == ActionDecision::kDryRun);
  }
  CHECK(planner.FindBreaker("")->AdmittedInWindow(TimePoint{} + 5min) == 0);
  ActionContext global = At(6min);
  global.dry_run = true;
  CHECK(planner.Decide(Rollback(), global).decision == ActionDecision::kDryRun);
}

TEST_CASE("named breakers count separately and keep their history across a reload", "[planner]") {
  ActionPlanner planner;
  BreakerPolicy one_per_hour;
  one_per_hour.max_actions = 1;
  planner.Configure({BreakerConfig{"", BreakerPolicy{}, {}, std::nullopt},
                     BreakerConfig{"db", one_per_hour, {}, std::nullopt}});
  CHECK(planner.Decide(Rollback(0s, "db"), At(0s)).decision == ActionDecision::kExecuted);
  CHECK(planner.Decide(Rollback(0s, "db"), At(1s)).decision == ActionDecision::kSuppressedBreaker);
  CHECK(planner.Decide(Rollback(0s), At(2s)).decision == ActionDecision::kExecuted);

  planner.Configure({BreakerConfig{"", BreakerPolicy{}, {}, std::nullopt},
                     BreakerConfig{"db", one_per_hour, {}, std::nullopt}});
  CHECK(planner.Decide(Rollback(0s, "db"), At(3s)).decision == ActionDecision::kSuppressedBreaker);
}

TEST_CASE("a replayed execution counts against the breaker and the cooldown", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  planner.ReplayExecuted("rollback", "", TimePoint{} + 1min);
  planner.ReplayExecuted("rollback", "", TimePoint{} + 2min);
  planner.ReplayExecuted("rollback", "", TimePoint{} + 3min);
  CHECK(planner.Decide(Rollback(), At(4min)).decision == ActionDecision::kSuppressedBreaker);
  CHECK(planner.Decide(Rollback(10min), At(5min)).decision == ActionDecision::kSuppressedCooldown);
}

TEST_CASE("breaker state survives a round trip through persistence", "[planner]") {
  ActionPlanner first = DefaultPlanner();
  for (auto t : {0min, 1min, 2min}) first.Decide(Rollback(), At(t));
  ActionPlanner second = DefaultPlanner();
  second.RestoreBreakerStates(first.BreakerStates());
  second.RestoreLastRuns(first.LastRuns());
  CHECK(second.Decide(Rollback(), At(3min)).decision == ActionDecision::kSuppressedBreaker);
  CHECK(second.ResetBreaker("", TimePoint{} + 4min));
  CHECK(second.Decide(Rollback(), At(5min)).decision == ActionDecision::kExecuted);
  CHECK_FALSE(second.ResetBreaker("nope", TimePoint{}));
}

TEST_CASE("decision names match the journal and metric vocabulary", "[planner]") {
  for (const char* name :
       {"executed", "dry_run", "suppressed_breaker", "suppressed_cooldown", "suppressed_unarmed",
        "suppressed_paused", "suppressed_dependency", "suppressed_fleet"}) {
    const auto decision = ParseDecision(name);
    REQUIRE(decision.has_value());
    CHECK(DecisionName(*decision) == name);
  }
  CHECK_FALSE(ParseDecision("ran").has_value());
}

TEST_CASE("an action with arm runs only within the window after the latest deploy", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  ActionConfig action = Rollback();
  action.arm = 30min;

  const PlannedAction never_deployed = planner.Decide(action, At(1h));
  CHECK(never_deployed.decision == ActionDecision::kSuppressedUnarmed);
  CHECK_THAT(never_deployed.why, Catch::Contains("no deploy recorded"));

  ActionContext inside = At(1h + 29min);
  inside.last_deploy = TimePoint{} + 1h;
  const PlannedAction armed = planner.Decide(action, inside);
  CHECK(armed.decision == ActionDecision::kExecuted);
  CHECK(armed.armed_until == TimePoint{} + 1h + 30min);

  ActionContext at_the_end = At(1h + 30min);
  at_the_end.last_deploy = TimePoint{} + 1h;
  const PlannedAction late = planner.Decide(action, at_the_end);
  CHECK(late.decision == ActionDecision::kSuppressedUnarmed);
  CHECK_THAT(late.why, Catch::Contains("arm window of 30m ended"));
  // Unarmed refusals consume nothing: one admission so far.
  CHECK(planner.FindBreaker("")->AdmittedInWindow(TimePoint{} + 1h + 30min) == 1);
}

TEST_CASE("an action without arm ignores deploys entirely", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  CHECK(planner.Decide(Rollback(), At(5h)).decision == ActionDecision::kExecuted);
}

TEST_CASE("unarmed is decided after pause and dependency, before cooldown and breaker",
          "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  ActionConfig action = Rollback(10min);
  action.arm = 1min;
  ActionContext paused = At(0min);
  paused.paused = true;
  CHECK(planner.Decide(action, paused).decision == ActionDecision::kSuppressedPaused);
  ActionContext held = At(0min);
  held.held_by = "db";
  CHECK(planner.Decide(action, held).decision == ActionDecision::kSuppressedDependency);

  ActionContext deployed = At(0min);
  deployed.last_deploy = TimePoint{};
  CHECK(planner.Decide(action, deployed).decision == ActionDecision::kExecuted);
  // Within its cooldown but outside the window: the window speaks first.
  CHECK(planner.Decide(action, At(5min)).decision == ActionDecision::kSuppressedUnarmed);
}

TEST_CASE("a dry run with arm still reports unarmed outside the window", "[planner]") {
  ActionPlanner planner = DefaultPlanner();
  ActionConfig action = Rollback();
  action.arm = 1min;
  action.dry_run = true;
  CHECK(planner.Decide(action, At(0min)).decision == ActionDecision::kSuppressedUnarmed);
  ActionContext deployed = At(0min);
  deployed.last_deploy = TimePoint{};
  CHECK(planner.Decide(action, deployed).decision == ActionDecision::kDryRun);
}
