#include "daemon/breaker.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace rollguard;
using namespace std::chrono_literals;

namespace Catch {
template <>
struct StringMaker<TimePoint> {
  static std::string convert(TimePoint t) { return std::to_string(ToMillis(t)) + "ms"; }
};
}  // namespace Catch

namespace {

// Simulated time starts at 0; tests read as "at 10 minutes".
TimePoint At(Duration since_start) { return TimePoint{} + since_start; }

BreakerPolicy Policy(int max_actions, Duration window, Duration cooldown) {
  BreakerPolicy policy;
  policy.max_actions = max_actions;
  policy.window = window;
  policy.cooldown = cooldown;
  return policy;
}

}  // namespace

TEST_CASE("the default policy is three actions per hour and a 30 minute cooldown", "[breaker]") {
  const BreakerPolicy policy;
  CHECK(policy.max_actions == 3);
  CHECK(policy.window == 1h);
  CHECK(policy.cooldown == 30min);
}

TEST_CASE("breaker opens at the third action and refuses the fourth", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};

  const Breaker::Decision first = breaker.TryAdmit(At(0min));
  CHECK(first.admitted);
  CHECK_FALSE(first.opened);
  CHECK_FALSE(first.open_until);
  CHECK(first.admitted_in_window == 1);

  CHECK(breaker.TryAdmit(At(10min)).admitted);
  CHECK_FALSE(breaker.IsOpen(At(10min)));

  const Breaker::Decision third = breaker.TryAdmit(At(20min));
  CHECK(third.admitted);
  CHECK(third.opened);
  CHECK(third.admitted_in_window == 3);
  CHECK(breaker.IsOpen(At(20min)));

  const Breaker::Decision fourth = breaker.TryAdmit(At(21min));
  CHECK_FALSE(fourth.admitted);
  CHECK_FALSE(fourth.opened);
  REQUIRE(fourth.open_until);
  // Cooldown ends at 50m, but three admissions stay in the window until 60m.
  CHECK(*fourth.open_until == At(60min));
  CHECK(fourth.admitted_in_window == 3);
}

TEST_CASE("an admission stops counting exactly one window after it was made", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));

  CHECK(breaker.AdmittedInWindow(At(60min) - 1ms) == 3);
  CHECK(breaker.AdmittedInWindow(At(60min)) == 2);

  const Breaker::Decision early = breaker.TryAdmit(At(60min) - 1ms);
  CHECK_FALSE(early.admitted);
  REQUIRE(early.open_until);
  CHECK(*early.open_until == At(60min));

  const Breaker::Decision on_time = breaker.TryAdmit(At(60min));
  CHECK(on_time.admitted);
  CHECK(on_time.admitted_in_window == 3);  // 10m, 20m, 60m
  CHECK(on_time.opened);
}

TEST_CASE("an open breaker refuses after its cooldown while the window is still full",
          "[breaker]") {
  // The spec's example: 3 / 1h / 30m, actions at 0, 10m, 20m.
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));

  const Breaker::Decision at_50 = breaker.TryAdmit(At(50min));
  CHECK_FALSE(at_50.admitted);
  REQUIRE(at_50.open_until);
  CHECK(*at_50.open_until == At(60min));
  CHECK(breaker.TryAdmit(At(60min)).admitted);
}

TEST_CASE("an open breaker refuses until its cooldown even when the window has room", "[breaker]") {
  // A short window: the admissions leave it long before the cooldown ends.
  Breaker breaker{Policy(3, 10min, 30min)};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(1min));
  CHECK(breaker.TryAdmit(At(2min)).opened);

  CHECK(breaker.AdmittedInWindow(At(15min)) == 0);
  const Breaker::Decision at_15 = breaker.TryAdmit(At(15min));
  CHECK_FALSE(at_15.admitted);
  REQUIRE(at_15.open_until);
  CHECK(*at_15.open_until == At(32min));  // 30 minutes after the third admission

  CHECK_FALSE(breaker.TryAdmit(At(32min) - 1ms).admitted);
  const Breaker::Decision at_32 = breaker.TryAdmit(At(32min));
  CHECK(at_32.admitted);
  CHECK_FALSE(at_32.opened);
  CHECK(at_32.admitted_in_window == 1);
}

TEST_CASE("open_until is the later of the cooldown end and the window end", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));
  CHECK(breaker.OpenUntil(At(20min)) == At(60min));  // window ends after the cooldown

  Breaker bunched{BreakerPolicy{}};
  bunched.TryAdmit(At(0min));
  bunched.TryAdmit(At(40min));
  bunched.TryAdmit(At(50min));
  // The window frees at 60m (the 0m admission leaves) but the cooldown runs to 80m.
  CHECK(bunched.OpenUntil(At(55min)) == At(80min));
  CHECK_FALSE(bunched.TryAdmit(At(80min) - 1ms).admitted);
  CHECK(bunched.TryAdmit(At(80min)).admitted);
}

TEST_CASE("a closed breaker has no open_until", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  CHECK_FALSE(breaker.IsOpen(At(0min)));
  CHECK_FALSE(breaker.OpenUntil(At(0min)));
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(1min));
  CHECK_FALSE(breaker.OpenUntil(At(2min)));
  CHECK(breaker.AdmittedInWindow(At(2min)) == 2);
}

TEST_CASE("refused actions are not recorded and do not extend the open time", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));
  for (int minute = 21; minute < 60; ++minute) {
    const Breaker::Decision decision = breaker.TryAdmit(At(std::chrono::minutes(minute)));
    CHECK_FALSE(decision.admitted);
    CHECK(decision.open_until == At(60min));
  }
  CHECK(breaker.AdmittedInWindow(At(59min)) == 3);
  CHECK(breaker.TryAdmit(At(60min)).admitted);
}

TEST_CASE("three hours of one rollback attempt a minute", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  std::vector<int> admitted_minutes;
  std::vector<int> opened_minutes;
  for (int minute = 0; minute <= 180; ++minute) {
    const TimePoint now = At(std::chrono::minutes(minute));
    const Breaker::Decision decision = breaker.TryAdmit(now);
    CHECK(decision.admitted == !decision.open_until.has_value());
    CHECK(breaker.AdmittedInWindow(now) <= 3);
    if (decision.admitted) admitted_minutes.push_back(minute);
    if (decision.opened) opened_minutes.push_back(minute);
  }
  // 0,1,2 open it; 60 is the first minute with both the window (the 0m one left) and the
  // cooldown (since 2m) clear, and is again the third in its hour (1m, 2m, 60m) so it
  // reopens; after that, each opening waits for 30 minutes and a free slot in the hour.
  CHECK(admitted_minutes == std::vector<int>{0, 1, 2, 60, 90, 91, 121, 151, 152});
  CHECK(opened_minutes == std::vector<int>{2, 60, 91, 121, 152});
}

TEST_CASE("max one action per 10s window and no cooldown admits one action per window",
          "[breaker]") {
  Breaker breaker{Policy(1, 10s, 0s)};
  const Breaker::Decision first = breaker.TryAdmit(At(0s));
  CHECK(first.admitted);
  CHECK(first.opened);
  const Breaker::Decision refused = breaker.TryAdmit(At(10s) - 1ms);
  CHECK_FALSE(refused.admitted);
  CHECK(refused.open_until == At(10s));
  CHECK(breaker.TryAdmit(At(10s)).admitted);
  CHECK_FALSE(breaker.TryAdmit(At(15s)).admitted);
  CHECK(breaker.TryAdmit(At(25s)).admitted);
}

TEST_CASE("a max_actions below one is treated as one", "[breaker]") {
  Breaker breaker{Policy(0, 1min, 0s)};
  CHECK(breaker.TryAdmit(At(0s)).admitted);
  CHECK_FALSE(breaker.TryAdmit(At(1s)).admitted);
}

TEST_CASE("reset closes an open breaker and forgets its history", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));
  REQUIRE(breaker.IsOpen(At(25min)));

  breaker.Reset(At(25min));
  CHECK_FALSE(breaker.IsOpen(At(25min)));
  CHECK(breaker.AdmittedInWindow(At(25min)) == 0);
  CHECK(breaker.State() == BreakerState{});

  // A full budget again: three more, and the third opens it with a fresh cooldown.
  CHECK(breaker.TryAdmit(At(26min)).admitted);
  CHECK(breaker.TryAdmit(At(27min)).admitted);
  const Breaker::Decision third = breaker.TryAdmit(At(28min));
  CHECK(third.admitted);
  CHECK(third.opened);
  CHECK(breaker.OpenUntil(At(28min)) == At(86min));  // 26m leaves the window at 86m
}

TEST_CASE("reset keeps admissions dated after it (a clock that stepped back)", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(30min));
  breaker.Reset(At(20min));  // the wall clock went back 10 minutes
  CHECK(breaker.AdmittedInWindow(At(20min)) == 1);
  CHECK_FALSE(breaker.State().opened_at);
}

TEST_CASE("breaker state round-trips and keeps an open breaker open", "[breaker]") {
  Breaker before{BreakerPolicy{}};
  before.TryAdmit(At(0min));
  before.TryAdmit(At(10min));
  before.TryAdmit(At(20min));
  const BreakerState state = before.State();
  CHECK(state.admitted == std::vector<TimePoint>{At(0min), At(10min), At(20min)});
  CHECK(state.opened_at == At(20min));

  Breaker after = Breaker::FromState(BreakerPolicy{}, state);
  CHECK(after.State() == state);
  CHECK(after.IsOpen(At(50min)));
  CHECK(after.OpenUntil(At(50min)) == At(60min));
  CHECK_FALSE(after.TryAdmit(At(60min) - 1ms).admitted);
  CHECK(after.TryAdmit(At(60min)).admitted);
}

TEST_CASE("restored breaker state need not be sorted", "[breaker]") {
  BreakerState state;
  state.admitted = {At(20min), At(0min), At(10min)};
  state.opened_at = At(20min);
  Breaker breaker = Breaker::FromState(BreakerPolicy{}, state);
  CHECK(breaker.State().admitted == std::vector<TimePoint>{At(0min), At(10min), At(20min)});
  CHECK(breaker.OpenUntil(At(21min)) == At(60min));
}

TEST_CASE("admissions that left the window are pruned from the state", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(65min));  // 0m has left the window: pruned
  CHECK(breaker.State().admitted == std::vector<TimePoint>{At(10min), At(65min)});
}

TEST_CASE("a new policy applies to the recorded history", "[breaker]") {
  Breaker breaker{BreakerPolicy{}};
  breaker.TryAdmit(At(0min));
  breaker.TryAdmit(At(10min));
  breaker.TryAdmit(At(20min));
  REQUIRE(breaker.IsOpen(At(21min)));

  breaker.SetPolicy(Policy(5, 1h, 30min));
  CHECK(breaker.policy().max_actions == 5);
  // Still inside the cooldown of the opening admission.
  CHECK(breaker.OpenUntil(At(21min)) == At(50min));
  CHECK(breaker.TryAdmit(At(50min)).admitted);
  const Breaker::Decision fifth = breaker.TryAdmit(At(51min));
  CHECK(fifth.admitted);
  CHECK(fifth.opened);
  CHECK(fifth.admitted_in_window == 5);
}

TEST_CASE("an action may run again once its cooldown has passed, not a millisecond earlier",
          "[cooldown]") {
  ActionCooldowns cooldowns;
  CHECK(cooldowns.Allows("rollback_api", At(0min), 10min));
  CHECK_FALSE(cooldowns.BlockedUntil("rollback_api", At(0min), 10min));

  cooldowns.Record("rollback_api", At(0min));
  CHECK_FALSE(cooldowns.Allows("rollback_api", At(5min), 10min));
  CHECK(cooldowns.BlockedUntil("rollback_api", At(5min), 10min) == At(10min));
  CHECK_FALSE(cooldowns.Allows("rollback_api", At(10min) - 1ms, 10min));
  CHECK(cooldowns.Allows("rollback_api", At(10min), 10min));

  // Other actions are independent.
  CHECK(cooldowns.Allows("restart_db", At(1min), 10min));
}

TEST_CASE("a zero cooldown always allows", "[cooldown]") {
  ActionCooldowns cooldowns;
  cooldowns.Record("notify", At(1min));
  CHECK(cooldowns.Allows("notify", At(1min), 0s));
}

TEST_CASE("cooldowns restart from their last runs", "[cooldown]") {
  ActionCooldowns before;
  before.Record("rollback_api", At(0min));
  before.Record("rollback_api", At(3min));  // the later run replaces the earlier
  before.Record("restart_db", At(1min));

  ActionCooldowns after(before.LastRuns());
  CHECK(after.LastRuns().at("rollback_api") == At(3min));
  CHECK(after.BlockedUntil("rollback_api", At(4min), 10min) == At(13min));
  CHECK(after.Allows("restart_db", At(11min), 10min));
}
