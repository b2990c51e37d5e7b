// Fleet breakers against a real redis-server (Debian's redis-server package) started by
// the test on a free loopback port: the admission script decides exactly as the local
// Breaker does on the same times, admissions racing from many connections never exceed
// the limit, an incident's claim has one holder whose result the others see, and an
// unreachable Redis is reported within the timeout.
#include "daemon/fleet_breaker.h"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "daemon/action_planner.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/real_servers.h"

using namespace rollguard;
using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPassword = "fleet-Redis-pw";

std::unique_ptr<RedisServer> StartRedis() {
  std::string why_not;
  bool skip = false;
  std::unique_ptr<RedisServer> server = RedisServer::Start(kPassword, &why_not, &skip);
  if (server == nullptr && !skip) FAIL("could not start redis-server: " << why_not);
  if (server == nullptr) WARN("skipped: " << why_not);
  return server;
}

FleetSettings Settings(const RedisServer& server) {
  FleetSettings settings;
  settings.redis = server.address();
  settings.target.host = "127.0.0.1";
  settings.target.port = server.port();
  settings.target.password = kPassword;
  settings.target.timeout = 2s;
  settings.key_prefix = "test:";
  return settings;
}

FleetVerdict AdmitNow(EventLoop& loop, FleetBreakerClient& client, FleetAdmission admission) {
  std::optional<FleetVerdict> verdict;
  client.Admit(std::move(admission), [&](FleetVerdict v) { verdict = std::move(v); });
  REQUIRE(loop.RunUntil([&] { return verdict.has_value(); }));
  return *verdict;
}

TimePoint At(Duration offset) { return FromMillis(1'800'000'000'000) + offset; }

// An admission asked by daemon `holder`; with `claim`, for a fleet action.
FleetAdmission Request(const std::string& breaker, const BreakerPolicy& policy,
                       const std::string& holder, const std::string& claim = "",
                       Duration claim_ttl = Duration{0}) {
  FleetAdmission admission;
  admission.breaker = breaker;
  admission.policy = policy;
  admission.holder = holder;
  admission.member = "m";
  admission.claim = claim;
  admission.claim_ttl = claim_ttl;
  return admission;
}

FleetBreakerView RefreshNow(EventLoop& loop, FleetBreakerClient& client, TimePoint now) {
  std::optional<FleetBreakerView> view;
  client.Refresh(now, [&](const FleetBreakerView& v) { view = v; });
  REQUIRE(loop.RunUntil([&] { return view.has_value(); }));
  return *view;
}

// The planner's decision for a fleet action `rollback` on breaker `breaker`.
PlannedAction Conclude(const std::string& breaker, const FleetVerdict& verdict, bool fail_open) {
  ActionPlanner planner;
  ActionConfig action;
  action.name = "rollback";
  action.breaker = breaker;
  action.fleet = true;
  return planner.CompleteFleet(action, verdict.now, verdict, fail_open);
}

}  // namespace

TEST_CASE("fleet breaker: the admission script decides as the local Breaker on the same times",
          "[fleet]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  EventLoop loop;
  const std::vector<BreakerPolicy> policies = {
      {3, std::chrono::hours(1), std::chrono::minutes(30)},
      {2, std::chrono::seconds(10), std::chrono::seconds(7)},
      {1, std::chrono::minutes(5), std::chrono::minutes(20)},
  };
  std::mt19937 random(42);
  int breaker_index = 0;
  for (const BreakerPolicy& policy : policies) {
    const std::string name = "b" + std::to_string(breaker_index++);
    FleetBreakerClient client(loop.get(), name, policy, Settings(*server));
    Breaker local(policy);
    Duration offset{0};
    // Steps from 1 ms to well past the window, and the exact boundary instants, so both
    // the window's open end and the cooldown's end are crossed many times.
    std::uniform_int_distribution<int64_t> step(
        1, ToMillis(At(policy.window)) - ToMillis(At(Duration{0})));
    int admitted = 0;
    for (int i = 0; i < 120; ++i) {
      const int64_t pick = step(random);
      offset += i % 7 == 3 ? Duration(0) : Duration(pick / (i % 3 == 0 ? 1 : 8) + 1);
      if (const auto until = local.OpenUntil(At(offset)); until && i % 5 == 0) {
        offset = *until - At(Duration{0});  // exactly when it may admit again
      }
      FleetAdmission admission = Request(name, policy, "d1");
      admission.member = std::to_string(i);
      admission.now = At(offset);
      const FleetVerdict fleet = AdmitNow(loop, client, admission);
      const Breaker::Decision expected = local.TryAdmit(At(offset));
      INFO("policy " << policy.max_actions << "/" << FormatDuration(policy.window) << "/"
                     << FormatDuration(policy.cooldown) << ", step " << i << " at +"
                     << FormatDuration(offset) << ": " << fleet.error);
      REQUIRE(fleet.kind != FleetVerdict::Kind::kUnreachable);
      CHECK(fleet.now == At(offset));
      CHECK((fleet.kind == FleetVerdict::Kind::kAdmitted) == expected.admitted);
      CHECK(fleet.admitted_in_window == expected.admitted_in_window);
      if (expected.admitted) {
        ++admitted;
        CHECK(fleet.opened == expected.opened);
      } else {
        REQUIRE(fleet.open_until.has_value());
        REQUIRE(expected.open_until.has_value());
        CHECK(*fleet.open_until == *expected.open_until);
      }
    }
    CHECK(admitted >= 3);  // the sequence did exercise admissions, not only refusals
  }
}

TEST_CASE("fleet breaker: twenty daemons racing for the last slots get exactly max_actions",
          "[fleet]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  EventLoop loop;
  const BreakerPolicy policy{3, std::chrono::hours(1), std::chrono::minutes(30)};
  std::vector<std::unique_ptr<FleetBreakerClient>> daemons;
  std::vector<std::optional<FleetVerdict>> verdicts(20);
  for (int i = 0; i < 20; ++i) {
    daemons.push_back(
        std::make_unique<FleetBreakerClient>(loop.get(), "race", policy, Settings(*server)));
    daemons.back()->Admit(Request("race", policy, "d" + std::to_string(i)),
                          [&verdicts, i](FleetVerdict v) { verdicts[i] = v; });
  }
  REQUIRE(loop.RunUntil([&] {
    for (const auto& v : verdicts)
      if (!v) return false;
    return true;
  }));
  int admitted = 0;
  int refused = 0;
  int opened = 0;
  for (const auto& v : verdicts) {
    INFO(v->error);
    if (v->kind == FleetVerdict::Kind::kAdmitted) ++admitted;
    if (v->kind == FleetVerdict::Kind::kBreakerOpen) ++refused;
    if (v->opened) ++opened;
  }
  CHECK(admitted == 3);
  CHECK(refused == 17);
  CHECK(opened == 1);
  CHECK(server->Command(0, {"ZCARD", "test:breaker:race:admitted"}) == "3");
}

TEST_CASE("fleet action: the first claim runs, the others see its holder and then its result",
          "[fleet]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  EventLoop loop;
  const BreakerPolicy policy{10, std::chrono::hours(1), std::chrono::minutes(1)};
  FleetSettings settings = Settings(*server);
  settings.lease = 1s;
  FleetBreakerClient d1(loop.get(), "fleet", policy, settings);
  FleetBreakerClient d2(loop.get(), "fleet", policy, settings);
  auto admission = [&](const std::string& holder) {
    return Request("fleet", policy, holder, "rollback:api@v42", std::chrono::hours(24));
  };
  const FleetVerdict first = AdmitNow(loop, d1, admission("d1"));
  REQUIRE(first.kind == FleetVerdict::Kind::kAdmitted);
  d1.Hold("rollback:api@v42", "d1");

  // While d1 runs and renews (every lease/3), d2 is refused with d1's name.
  loop.RunFor(1500ms);
  FleetVerdict second = AdmitNow(loop, d2, admission("d2"));
  REQUIRE(second.kind == FleetVerdict::Kind::kClaimed);
  CHECK(second.holder == "d1");
  CHECK(second.holder_result == "running");
  REQUIRE(second.lease_until.has_value());
  CHECK(*second.lease_until > second.now);  // renewed: not lost

  // The planner's sentence for it names the holder.
  PlannedAction plan = Conclude("fleet", second, false);
  CHECK(plan.decision == ActionDecision::kSuppressedFleet);
  CHECK(plan.why == "claimed by d1 (running)");

  d1.Release("rollback:api@v42", "d1", "ok");
  loop.RunFor(200ms);
  second = AdmitNow(loop, d2, admission("d2"));
  REQUIRE(second.kind == FleetVerdict::Kind::kClaimed);
  CHECK(second.holder_result == "ok");
  CHECK(Conclude("fleet", second, false).why == "claimed by d1 (ok)");

  // The status view shows the claim's result now, and one admission.
  const FleetBreakerView view = RefreshNow(loop, d2, second.now);
  CHECK(view.reachable);
  CHECK(view.admitted_in_window == 1);
  REQUIRE(view.claims.size() == 1);
  CHECK(view.claims[0].rfind("d1 ran rollback:api@v42: ok at ", 0) == 0);
}

TEST_CASE("fleet action: a holder that stops renewing is lost, and still nobody else runs it",
          "[fleet]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  EventLoop loop;
  const BreakerPolicy policy{10, std::chrono::hours(1), std::chrono::minutes(1)};
  FleetSettings settings = Settings(*server);
  settings.lease = 1s;
  FleetBreakerClient d1(loop.get(), "fleet", policy, settings);
  FleetBreakerClient d2(loop.get(), "fleet", policy, settings);
  REQUIRE(AdmitNow(loop, d1, Request("fleet", policy, "d1", "rollback:api", 10min)).kind ==
          FleetVerdict::Kind::kAdmitted);
  // d1 "dies": no Hold(), no Release().
  const FleetBreakerView view = RefreshNow(loop, d2, FromMillis(0));
  REQUIRE(view.claims.size() == 1);
  CHECK(view.claims[0].rfind("d1 holds rollback:api (lease until", 0) == 0);

  loop.RunFor(1300ms);
  const FleetVerdict later =
      AdmitNow(loop, d2, Request("fleet", policy, "d2", "rollback:api", 10min));
  REQUIRE(later.kind == FleetVerdict::Kind::kClaimed);
  const PlannedAction plan = Conclude("fleet", later, true);
  CHECK(plan.decision == ActionDecision::kSuppressedFleet);  // fail_open does not apply
  CHECK(plan.why.find("claimed by d1 (lease lost") == 0);
}

TEST_CASE("fleet breaker: an unreachable Redis fails closed, or open when asked", "[fleet]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  EventLoop loop;
  const BreakerPolicy policy{1, std::chrono::hours(1), std::chrono::minutes(30)};
  FleetSettings settings = Settings(*server);
  settings.target.timeout = 500ms;
  server->Kill();
  FleetBreakerClient client(loop.get(), "gone", policy, settings);
  const auto started = std::chrono::steady_clock::now();
  const FleetVerdict verdict = AdmitNow(loop, client, Request("gone", policy, "d1"));
  CHECK(std::chrono::steady_clock::now() - started < 1500ms);
  REQUIRE(verdict.kind == FleetVerdict::Kind::kUnreachable);
  CHECK(verdict.error == "connection refused");

  ActionPlanner planner;
  planner.Configure({BreakerConfig{"gone", policy, {}, settings}});
  ActionConfig action;
  action.name = "rollback";
  action.breaker = "gone";
  const TimePoint now = At(Duration{0});
  PlannedAction closed = planner.CompleteFleet(action, now, verdict, false);
  CHECK(closed.decision == ActionDecision::kSuppressedFleet);
  CHECK(closed.why == "fleet breaker gone unreachable (connection refused); fail closed");
  // fail_open: this daemon's own copy of the breaker (1 per hour) decides.
  CHECK(planner.CompleteFleet(action, now, verdict, true).decision == ActionDecision::kExecuted);
  CHECK(planner.CompleteFleet(action, now + 1min, verdict, true).decision ==
        ActionDecision::kSuppressedBreaker);
}

TEST_CASE("fleet incident: a deploy version names it for a day, else the action cooldown",
          "[fleet]") {
  Duration ttl{0};
  CHECK(FleetIncident("api", "v42", std::chrono::minutes(10), 30s, &ttl) == "api@v42");
  CHECK(ttl == std::chrono::hours(24));
  CHECK(FleetIncident("api", "", std::chrono::minutes(10), 30s, &ttl) == "api");
  CHECK(ttl == std::chrono::minutes(10));
  CHECK(FleetIncident("api", "", 5s, 30s, &ttl) == "api");
  CHECK(ttl == 30s);
}
