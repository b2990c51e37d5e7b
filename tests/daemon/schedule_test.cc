#include <catch2/catch.hpp>

#include "daemon/schedule.h"

using namespace rollguard;

TEST_CASE("probe slots stay on a fixed grid however late a run was", "[schedule]") {
  const uint64_t first = 1'000;
  const uint64_t interval = 100;
  CHECK(NextSlotAfter(first, interval, 500) == 1'000);     // not started yet
  CHECK(NextSlotAfter(first, interval, 1'000) == 1'100);   // exactly on a slot: the next
  CHECK(NextSlotAfter(first, interval, 1'001) == 1'100);   // a little late
  CHECK(NextSlotAfter(first, interval, 1'099) == 1'100);
  CHECK(NextSlotAfter(first, interval, 1'350) == 1'400);   // missed slots are skipped
}

TEST_CASE("first runs spread over the interval and are stable per name", "[schedule]") {
  const uint64_t interval = 1'000'000;
  CHECK(InitialOffset("api", interval) == InitialOffset("api", interval));
  CHECK(InitialOffset("api", interval) < interval);
  // 1000 names over 10 buckets: each bucket gets a fair share (no clumping at 0).
  int buckets[10] = {};
  for (int i = 0; i < 1000; ++i) {
    ++buckets[InitialOffset("probe_" + std::to_string(i), interval) * 10 / interval];
  }
  for (int count : buckets) {
    CHECK(count > 50);
    CHECK(count < 150);
  }
}
