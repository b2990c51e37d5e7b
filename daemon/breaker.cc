#include "daemon/breaker.h"

#include <algorithm>

namespace rollguard {
namespace {

int MaxActions(const BreakerPolicy& policy) { return std::max(1, policy.max_actions); }

}  // namespace

Breaker::Breaker(BreakerPolicy policy) : policy_(policy) {}

Breaker Breaker::FromState(BreakerPolicy policy, BreakerState state) {
  Breaker breaker(policy);
  breaker.admitted_ = std::move(state.admitted);
  std::sort(breaker.admitted_.begin(), breaker.admitted_.end());
  breaker.opened_at_ = state.opened_at;
  return breaker;
}

Breaker::Decision Breaker::TryAdmit(TimePoint now) {
  Prune(now);
  Decision decision;
  decision.open_until = OpenUntil(now);
  if (decision.open_until) {
    decision.admitted_in_window = AdmittedInWindow(now);
    return decision;
  }
  decision.admitted = true;
  admitted_.insert(std::upper_bound(admitted_.begin(), admitted_.end(), now), now);
  decision.admitted_in_window = AdmittedInWindow(now);
  if (decision.admitted_in_window >= MaxActions(policy_)) {
    opened_at_ = now;
    decision.opened = true;
  }
  return decision;
}

bool Breaker::IsOpen(TimePoint now) const { return OpenUntil(now).has_value(); }

int Breaker::AdmittedInWindow(TimePoint now) const {
  // Counts t with now - window < t: the first such entry is the upper bound of the
  // window's (excluded) start.
  auto first = std::upper_bound(admitted_.begin(), admitted_.end(), now - policy_.window);
  return static_cast<int>(admitted_.end() - first);
}

std::optional<TimePoint> Breaker::WindowFreeAt(TimePoint now) const {
  auto first = std::upper_bound(admitted_.begin(), admitted_.end(), now - policy_.window);
  const auto in_window = admitted_.end() - first;
  const auto max = MaxActions(policy_);
  if (in_window < max) return std::nullopt;
  // Fewer than max count once the (in_window - max)-th of them has left, which happens
  // exactly one window after it was admitted.
  return *(first + (in_window - max)) + policy_.window;
}

std::optional<TimePoint> Breaker::CooldownEndsAt(TimePoint now) const {
  if (!opened_at_) return std::nullopt;
  const TimePoint ends = *opened_at_ + policy_.cooldown;
  if (now >= ends) return std::nullopt;
  return ends;
}

std::optional<TimePoint> Breaker::OpenUntil(TimePoint now) const {
  const std::optional<TimePoint> window_free = WindowFreeAt(now);
  const std::optional<TimePoint> cooldown_ends = CooldownEndsAt(now);
  if (!window_free) return cooldown_ends;
  if (!cooldown_ends) return window_free;
  return std::max(*window_free, *cooldown_ends);
}

void Breaker::Reset(TimePoint now) {
  admitted_.erase(admitted_.begin(), std::upper_bound(admitted_.begin(), admitted_.end(), now));
  opened_at_.reset();
}

void Breaker::SetPolicy(BreakerPolicy policy) { policy_ = policy; }

BreakerState Breaker::State() const { return BreakerState{admitted_, opened_at_}; }

void Breaker::Prune(TimePoint now) {
  admitted_.erase(admitted_.begin(),
                  std::upper_bound(admitted_.begin(), admitted_.end(), now - policy_.window));
}

bool ActionCooldowns::Allows(const std::string& action, TimePoint now, Duration cooldown) const {
  return !BlockedUntil(action, now, cooldown).has_value();
}

std::optional<TimePoint> ActionCooldowns::BlockedUntil(const std::string& action, TimePoint now,
                                                       Duration cooldown) const {
  auto it = last_runs_.find(action);
  if (it == last_runs_.end()) return std::nullopt;
  const TimePoint until = it->second + cooldown;
  if (now >= until) return std::nullopt;
  return until;
}

void ActionCooldowns::Record(const std::string& action, TimePoint now) { last_runs_[action] = now; }

}  // namespace rollguard
