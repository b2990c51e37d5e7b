// Breaker: the circuit breaker that bounds how many actions rollguard runs (spec §5).
//
// Pure: no IO, no clock reads. Every call takes `now` as a value, so an hour of breaker
// behaviour is a millisecond test and `rollguard test` runs the very same code.
//
// Semantics, with policy {max_actions = M, window = W, cooldown = C}:
//   * An action is admitted while fewer than M admitted actions fall in the trailing
//     window. The window is left-open, right-closed: an admission at time t counts at
//     `now` iff  now - W < t, i.e. it stops counting at exactly t + W (like Prometheus
//     range selectors). Admissions later than `now` (the wall clock stepped back) count.
//   * When the M-th is admitted, the breaker opens: it admits nothing until C has passed
//     since that M-th admission (now >= opened_at + C) AND fewer than M admitted actions
//     fall in the trailing window. Both conditions must hold.
//   With 3 / 1h / 30m: admissions at 0, 10m, 20m open it; at 50m the cooldown has passed
//   but three admissions are in the window, so it refuses; at 60m the one at 0 leaves the
//   window and the next action is admitted (at 60m - 1ms it is still refused).
//   * A refusal is not recorded: it neither counts nor extends anything.
//
// Not thread-safe; the event loop owns it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"

namespace rollguard {

struct BreakerPolicy {
  int max_actions = 3;  // values below 1 are treated as 1
  Duration window = std::chrono::hours(1);
  Duration cooldown = std::chrono::minutes(30);

  bool operator==(const BreakerPolicy&) const = default;
};

// What the runtime persists in state.json so that a restart never resets a breaker.
struct BreakerState {
  std::vector<TimePoint> admitted;     // admission times, ascending
  std::optional<TimePoint> opened_at;  // the admission that last opened the breaker

  bool operator==(const BreakerState&) const = default;
};

class Breaker {
 public:
  struct Decision {
    bool admitted = false;
    // True when this admission was the M-th in the window and opened the breaker (the
    // caller notifies "breaker open").
    bool opened = false;
    // Refused: the earliest time an admission could succeed if nothing else happens.
    // Admitted: unset.
    std::optional<TimePoint> open_until;
    // Admitted actions in the window after this decision.
    int admitted_in_window = 0;
  };

  Breaker() = default;
  explicit Breaker(BreakerPolicy policy);

  // Restores a persisted breaker under `policy` (which may differ from the one the state
  // was recorded under: the new policy applies to the old history). Admission times
  // need not be sorted.
  static Breaker FromState(BreakerPolicy policy, BreakerState state);

  // Admits an action at `now` (recording it) or refuses it (recording nothing).
  // Forgets admissions that have left the window.
  Decision TryAdmit(TimePoint now);

  // True when an action at `now` would be refused.
  bool IsOpen(TimePoint now) const;

  // Admitted actions that count at `now` (see the window boundary above).
  int AdmittedInWindow(TimePoint now) const;

  // When open at `now`: the earliest time >= now an admission could succeed if nothing
  // else happens. When closed: nullopt.
  std::optional<TimePoint> OpenUntil(TimePoint now) const;

  // Closes the breaker by hand (`rollguard breaker reset`): forgets every admission at
  // or before `now` and the open state, so the next M actions are admitted. Admissions
  // later than `now` (only possible after the wall clock stepped back) are kept.
  void Reset(TimePoint now);

  // A change of policy applies to the history already recorded (config reload).
  void SetPolicy(BreakerPolicy policy);
  const BreakerPolicy& policy() const { return policy_; }

  // For persistence. May include admissions that no longer count; they are harmless
  // and are dropped by the next TryAdmit.
  BreakerState State() const;

 private:
  // When M or more admissions count at `now`: the time from which fewer than M do.
  std::optional<TimePoint> WindowFreeAt(TimePoint now) const;
  // When the cooldown after opening has not passed at `now`: the time it does.
  std::optional<TimePoint> CooldownEndsAt(TimePoint now) const;
  void Prune(TimePoint now);

  BreakerPolicy policy_;
  std::vector<TimePoint> admitted_;  // ascending
  std::optional<TimePoint> opened_at_;
};

// Per-action cooldowns (spec §5 `cooldown`): the minimum time between two runs of the
// same action. Pure like Breaker. An action may run again once `now >= last + cooldown`.
class ActionCooldowns {
 public:
  ActionCooldowns() = default;
  explicit ActionCooldowns(std::map<std::string, TimePoint> last_runs)
      : last_runs_(std::move(last_runs)) {}

  // True when `action` has never run or its last run is at least `cooldown` before now.
  bool Allows(const std::string& action, TimePoint now, Duration cooldown) const;

  // When Allows() is false: the time it becomes true. Otherwise nullopt.
  std::optional<TimePoint> BlockedUntil(const std::string& action, TimePoint now,
                                        Duration cooldown) const;

  // Records a run of `action` at `now` (replacing the previous one).
  void Record(const std::string& action, TimePoint now);

  // For persistence: last run per action name.
  const std::map<std::string, TimePoint>& LastRuns() const { return last_runs_; }

 private:
  std::map<std::string, TimePoint> last_runs_;
};

}  // namespace rollguard
