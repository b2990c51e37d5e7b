// Time as a value.
//
// Everything that decides by time (rules with `for`, `recover`, the breaker, cooldowns,
// schedules) takes a TimePoint as a parameter; only the event loop reads the clock. Time
// is wall-clock milliseconds since the Unix epoch so that persisted breaker state stays
// meaningful across restarts and reboots; simulated time (`rollguard test`, unit tests)
// starts at TimePoint{} = 0.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rollguard {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

// An optional TimePoint in the room of one: TimePoint::min(), a moment no clock reports
// and no parsed or restored time can be, stands for "none". Per-rule state holds several
// "since when" moments; as std::optional<TimePoint> each took 16 bytes instead of 8,
// ~0.6 MiB at 10,000 rules (bench/RESULTS.md). Reads like the optional it replaces.
class OptionalTime {
 public:
  OptionalTime() = default;
  // REQUIRES: time != TimePoint::min().
  OptionalTime& operator=(TimePoint time) {
    time_ = time;
    return *this;
  }
  explicit operator bool() const { return time_ != kNone; }
  // REQUIRES: a value is set.
  TimePoint operator*() const { return time_; }
  void reset() { time_ = kNone; }
  friend bool operator==(const OptionalTime&, const OptionalTime&) = default;

 private:
  static constexpr TimePoint kNone = TimePoint::min();
  TimePoint time_ = kNone;
};

// Seconds as a double, the unit rules and metrics use.
inline double ToSeconds(Duration d) { return static_cast<double>(d.count()) / 1000.0; }
inline int64_t ToMillis(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint FromMillis(int64_t ms) { return TimePoint{Duration{ms}}; }

// Parses a Prometheus-style duration: a sequence of <integer><unit> with units
// d, h, m, s, ms in decreasing order, e.g. "250ms", "5s", "1m30s", "1d". "0" is allowed.
// Errors say what was expected, without a location (callers add file:line).
Result<Duration> ParseDuration(std::string_view text);

// Formats the shortest exact Prometheus-style spelling: 90000ms -> "1m30s", 0 -> "0s".
std::string FormatDuration(Duration d);

// "2026-11-23T12:00:00.000Z": how times appear in the journal, logs and the status API.
std::string FormatIso8601(TimePoint t);

// The source of "now". The daemon uses SystemClock; tests use FakeClock
// (tests/fakes/fake_clock.h) and advance it by hand.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override {
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
  }
};

}  // namespace rollguard
