// Fleet breakers: one circuit breaker shared by every daemon of a service, kept in Redis
// (spec §5 "Fleet scope"; docs/fleet.md).
//
// A `[breaker NAME]` with `scope = fleet` keeps its admission history in Redis instead of
// state.json, so "three per hour" holds for the fleet, not per VM. An action with
// `scope = fleet` also takes a claim on the incident: the first daemon to claim it runs
// the action, every other daemon records `suppressed_fleet` with the holder's name.
//
// Atomicity: admission is one Lua script (EVAL), which Redis runs without interleaving
// any other command. It checks the incident's claim, prunes and counts the breaker's
// admissions, decides exactly as the local Breaker does (daemon/breaker.h: same window
// boundary, same open/cooldown rule), and records the admission and the claim, all in
// one step: two daemons can never both take the last slot, nor both claim an incident.
// The script reads Redis's own clock (TIME), so one clock judges the whole fleet; tests
// may pass an explicit time instead, which is how the script is checked against the
// local Breaker on the same sequence of times (tests/daemon/fleet_breaker_test.cc).
//
// Keys, under `key_prefix` (default "rollguard:"), for breaker B:
//   {prefix}breaker:B:admitted   sorted set: one member per admission, scored by its time
//                                (ms since the epoch); pruned to the window on each use
//   {prefix}breaker:B:state      hash: opened_at (ms)
//   {prefix}breaker:B:claims     set: claim keys taken through this breaker (for status)
//   {prefix}claim:A:INCIDENT     hash: holder, claimed_at, lease_until, result, finished_at
// Every key expires on its own (window + cooldown for the breaker's, the claim's TTL for
// a claim), so an abandoned fleet leaves nothing behind.
//
// Claims and leases: the holder renews lease_until while its action runs and writes the
// result when it finishes. A holder killed while running stops renewing; others then see
// "lease lost" — and still do not run the action for that incident: a rollback that may
// have half-run is not run again by another VM (the operator decides). The claim itself
// lives for the claim TTL (24h for an incident named by a deploy version; the action's
// cooldown otherwise).
//
// Redis unreachable (or slow past `timeout`): a fleet decision fails closed — the action
// is recorded as suppressed_fleet — unless the breaker has `fail_open = true`, which
// decides with this daemon's local copy of the breaker instead.
//
// This header has the pure parts (script, commands, reply parsing) and FleetBreakerClient,
// the thin IO edge that sends them over RedisCall on the event loop.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/time.h"
#include "daemon/breaker.h"
#include "probes/redis_call.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

// A `[breaker NAME]`'s fleet settings (keys scope = fleet, redis, password_file, db,
// key_prefix, fail_open, timeout, lease).
struct FleetSettings {
  std::string redis;  // "host:port" as written, for messages
  RedisTarget target;
  std::string key_prefix = "rollguard:";
  bool fail_open = false;
  // How long a claim's holder may go without renewing before others call it lost.
  Duration lease = std::chrono::seconds(30);
};

// One admission asked of a fleet breaker.
struct FleetAdmission {
  std::string breaker;  // its name in keys and messages ("default" for the unnamed one)
  BreakerPolicy policy;
  std::string holder;  // this daemon's name ([daemon] name)
  std::string member;  // unique per admission: the journal record's id
  // For an action with scope = fleet: the claim's key suffix "ACTION:INCIDENT" and how
  // long the claim lives. Empty for an action that only shares the breaker.
  std::string claim;
  Duration claim_ttl{0};
  Duration lease = std::chrono::seconds(30);
  // Tests: judge at this time. Unset: Redis's own clock (TIME).
  std::optional<TimePoint> now;
};

struct FleetVerdict {
  enum class Kind {
    kAdmitted,     // recorded in Redis (and the claim taken, for a fleet action)
    kBreakerOpen,  // refused: the fleet breaker is open until `open_until`
    kClaimed,      // refused: another daemon (or this one, before a restart) holds the claim
    kUnreachable,  // no answer: `error` says why
  };
  Kind kind = Kind::kUnreachable;
  TimePoint now;  // the time Redis judged at
  int admitted_in_window = 0;
  bool opened = false;  // kAdmitted: this admission opened the breaker
  std::optional<TimePoint> open_until;
  // kClaimed: who holds it and how it went: "running", "ok", "failed", "timeout".
  std::string holder;
  std::string holder_result;
  std::optional<TimePoint> lease_until;
  std::string error;
};

// The fleet breaker as Redis sees it (for status and metrics).
struct FleetBreakerView {
  bool reachable = false;
  std::string error;  // when not reachable
  int admitted_in_window = 0;
  std::optional<TimePoint> open_until;
  // The claims of the last day, newest first (at most 10): "d3 holds rollback:api@v42
  // (lease until ...)" while its action runs, "d3 ran rollback:api@v42: ok at ..." after.
  std::vector<std::string> claims;
  std::optional<TimePoint> checked_at;
};

// The Lua script and the argv that run each operation (EVAL script numkeys keys... args...).
std::vector<std::string> FleetAdmitCommand(const std::string& key_prefix,
                                           const FleetAdmission& admission);
std::vector<std::string> FleetRenewCommand(const std::string& key_prefix, const std::string& claim,
                                           const std::string& holder, Duration lease);
std::vector<std::string> FleetReleaseCommand(const std::string& key_prefix,
                                             const std::string& claim, const std::string& holder,
                                             const std::string& result);
std::vector<std::string> FleetResetCommand(const std::string& key_prefix,
                                           const std::string& breaker);
std::vector<std::string> FleetViewCommand(const std::string& key_prefix, const std::string& breaker,
                                          const BreakerPolicy& policy);

// Turns a call's outcome into a verdict / view. A malformed reply is kUnreachable with
// an error that says what came back.
FleetVerdict ParseFleetAdmitReply(const RedisCallResult& call);
FleetBreakerView ParseFleetViewReply(const RedisCallResult& call, TimePoint now);

// The incident name daemons agree on: "RULE@VERSION" when the rule's service has a
// recorded deploy with a version, else "RULE" (then one claim covers the rule for
// `cooldown`, the action's own cooldown). `claim_ttl` is set accordingly.
std::string FleetIncident(const std::string& rule, const std::string& deploy_version,
                          Duration action_cooldown, Duration lease, Duration* claim_ttl);

// The IO edge: sends fleet operations to one breaker's Redis on the event loop. Several
// may be in flight at once (two rules deciding at the same instant). Not thread-safe.
class FleetBreakerClient {
 public:
  FleetBreakerClient(sd_event* event, std::string breaker, BreakerPolicy policy,
                     FleetSettings settings);
  ~FleetBreakerClient();  // cancels calls in flight: their callbacks are not called
  FleetBreakerClient(const FleetBreakerClient&) = delete;
  FleetBreakerClient& operator=(const FleetBreakerClient&) = delete;

  // A reload may change the policy or the Redis; calls in flight finish on the old one.
  void Update(BreakerPolicy policy, FleetSettings settings);
  const FleetSettings& settings() const { return settings_; }
  const BreakerPolicy& policy() const { return policy_; }

  void Admit(FleetAdmission admission, std::function<void(FleetVerdict)> done);
  // While an action with a claim runs: renews its lease every lease/3 until Release().
  void Hold(const std::string& claim, const std::string& holder);
  // Writes the action's result into its claim and stops renewing.
  void Release(const std::string& claim, const std::string& holder, const std::string& result);
  // `rollguard breaker reset`: forgets the admissions and the open state in Redis.
  void Reset(std::function<void(std::string error)> done);
  // Reads the breaker's state from Redis; `done` gets the view (also kept in view()).
  // `now` stamps the view's checked_at.
  void Refresh(TimePoint now, std::function<void(const FleetBreakerView&)> done);
  const FleetBreakerView& view() const { return view_; }

 private:
  struct Renewal;
  void Send(std::vector<std::string> argv, std::function<void(RedisCallResult)> done);
  static int OnRenew(sd_event_source* source, uint64_t usec, void* userdata);

  sd_event* event_;
  std::string breaker_;
  BreakerPolicy policy_;
  FleetSettings settings_;
  FleetBreakerView view_;
  std::list<std::unique_ptr<RedisCall>> calls_;  // in flight
  std::list<std::unique_ptr<Renewal>> renewals_;
};

}  // namespace rollguard
