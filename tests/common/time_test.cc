#include "common/time.h"

#include <catch2/catch.hpp>

using namespace rollguard;
using namespace std::chrono_literals;

TEST_CASE("durations parse in Prometheus style", "[time]") {
  CHECK(*ParseDuration("250ms") == 250ms);
  CHECK(*ParseDuration("5s") == 5s);
  CHECK(*ParseDuration("10m") == 10min);
  CHECK(*ParseDuration("1h") == 1h);
  CHECK(*ParseDuration("1d") == 24h);
  CHECK(*ParseDuration("1m30s") == 90s);
  CHECK(*ParseDuration("1h2m3s4ms") == 1h + 2min + 3s + 4ms);
  CHECK(*ParseDuration("0") == 0ms);
}

TEST_CASE("malformed durations are errors that say what was expected", "[time]") {
  for (const char* bad : {"", "5", "s", "5x", "1s1m", "1.5s", "-5s", "5 s", "1m1m"}) {
    INFO(bad);
    const auto parsed = ParseDuration(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains("expected a duration"));
  }
}

TEST_CASE("durations too long for milliseconds are errors, never an overflow", "[time]") {
  // Found by the rule parser fuzzer: 777777777777d overflowed int64 milliseconds.
  for (const char* huge :
       {"777777777777d", "999999999999h", "11574075d", "1000000000000d1ms", "11574074d2h"}) {
    INFO(huge);
    const auto parsed = ParseDuration(huge);
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains("too long"));
  }
  // Up to 10^15 ms (about 31,700 years) is accepted, exactly.
  CHECK(*ParseDuration("11574074d1h") == std::chrono::hours(11574074LL * 24 + 1));
}

TEST_CASE("durations format back to their shortest spelling", "[time]") {
  CHECK(FormatDuration(90s) == "1m30s");
  CHECK(FormatDuration(0ms) == "0s");
  CHECK(FormatDuration(250ms) == "250ms");
  CHECK(FormatDuration(25h) == "1d1h");
  CHECK(FormatIso8601(FromMillis(1'700'000'000'123)) == "2023-11-14T22:13:20.123Z");
}

TEST_CASE("an OptionalTime is empty until set, holds any time a clock gives, and resets",
          "[time]") {
  OptionalTime since;
  CHECK_FALSE(since);
  for (const TimePoint time :
       {TimePoint{}, FromMillis(-1), FromMillis(1'700'000'000'000), TimePoint::max()}) {
    since = time;
    REQUIRE(since);
    CHECK(*since == time);
  }
  since.reset();
  CHECK_FALSE(since);
  CHECK(sizeof(OptionalTime) == sizeof(TimePoint));
}
