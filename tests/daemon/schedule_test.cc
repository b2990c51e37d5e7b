#include "daemon/schedule.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>
#include <utility>
#include <vector>

using namespace rollguard;

TEST_CASE("probe slots stay on a fixed grid however late a run was", "[schedule]") {
  const uint64_t first = 1'000;
  const uint64_t interval = 100;
  CHECK(NextSlotAfter(first, interval, 500) == 1'000);    // not started yet
  CHECK(NextSlotAfter(first, interval, 1'000) == 1'100);  // exactly on a slot: the next
  CHECK(NextSlotAfter(first, interval, 1'001) == 1'100);  // a little late
  CHECK(NextSlotAfter(first, interval, 1'099) == 1'100);
  CHECK(NextSlotAfter(first, interval, 1'350) == 1'400);  // missed slots are skipped
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

TEST_CASE("schedule queue hands out every due run once, earliest first, then the next slots",
          "[schedule]") {
  ScheduleQueue queue;
  CHECK_FALSE(queue.NextDue().has_value());
  queue.Add(0, 300, 1'000);
  queue.Add(1, 100, 1'000);
  queue.Add(2, 200, 500);
  REQUIRE(queue.NextDue() == 100u);

  std::vector<size_t> due;
  queue.TakeDue(99, due);
  CHECK(due.empty());
  queue.TakeDue(250, due);
  CHECK(due == std::vector<size_t>{1, 2});
  CHECK(queue.NextDue() == 300u);

  due.clear();
  queue.TakeDue(300, due);
  CHECK(due == std::vector<size_t>{0});
  // Next slots: 1 at 1'100, 2 at 700, 0 at 1'300.
  CHECK(queue.NextDue() == 700u);
  due.clear();
  queue.TakeDue(1'100, due);
  CHECK(due == std::vector<size_t>{2, 1});  // 2's slot (700) came before 1's (1'100)
  CHECK(queue.NextDue() == 1'200u);         // 2 again, on its own grid
}

TEST_CASE("schedule queue: a loop that wakes late skips missed slots, never bunches them",
          "[schedule]") {
  ScheduleQueue queue;
  queue.Add(7, 1'000, 100);
  std::vector<size_t> due;
  queue.TakeDue(1'350, due);             // slots 1'000, 1'100, 1'200 and 1'300 have all passed
  CHECK(due == std::vector<size_t>{7});  // one run, not four
  CHECK(queue.NextDue() == 1'400u);      // still on the grid: no drift
  queue.Clear();
  CHECK(queue.size() == 0);
  CHECK_FALSE(queue.NextDue().has_value());
}

TEST_CASE("schedule queue: runs due at the same slot come in id order", "[schedule]") {
  ScheduleQueue queue;
  for (size_t id : {5u, 3u, 9u, 1u}) queue.Add(id, 1'000, 1'000);
  std::vector<size_t> due;
  queue.TakeDue(1'000, due);
  CHECK(due == std::vector<size_t>{1, 3, 5, 9});
}

TEST_CASE("deadline queue hands out each due id once, earliest first", "[schedule][deadline]") {
  DeadlineQueue queue;
  CHECK_FALSE(queue.NextDue().has_value());
  queue.Set(3, 500);
  queue.Set(1, 200);
  queue.Set(7, 200);
  queue.Set(2, 900);
  REQUIRE(queue.NextDue() == 200u);
  std::vector<size_t> due;
  queue.TakeDue(199, due);
  CHECK(due.empty());
  queue.TakeDue(500, due);
  CHECK(due == std::vector<size_t>{1, 7, 3});  // equal deadlines by id
  CHECK(queue.size() == 1);
  CHECK(queue.NextDue() == 900u);
  due.clear();
  queue.TakeDue(500, due);  // taken ones are gone, not rescheduled
  CHECK(due.empty());
}

TEST_CASE("setting an id's deadline again moves its one entry", "[schedule][deadline]") {
  DeadlineQueue queue;
  queue.Set(0, 100);
  queue.Set(1, 300);
  queue.Set(0, 400);  // later
  CHECK(queue.size() == 2);
  CHECK(queue.NextDue() == 300u);
  queue.Set(1, 50);  // earlier
  CHECK(queue.NextDue() == 50u);
  queue.Set(1, 50);  // unchanged
  CHECK(queue.size() == 2);
  std::vector<size_t> due;
  queue.TakeDue(1'000, due);
  CHECK(due == std::vector<size_t>{1, 0});
}

TEST_CASE("a removed or cleared deadline is never handed out", "[schedule][deadline]") {
  DeadlineQueue queue;
  queue.Set(0, 100);
  queue.Set(1, 200);
  queue.Set(2, 300);
  queue.Remove(1);
  queue.Remove(1);   // twice is fine
  queue.Remove(42);  // never set
  std::vector<size_t> due;
  queue.TakeDue(1'000, due);
  CHECK(due == std::vector<size_t>{0, 2});
  queue.Set(5, 10);
  queue.Clear();
  CHECK_FALSE(queue.NextDue().has_value());
  queue.Set(0, 20);  // usable after Clear
  due.clear();
  queue.TakeDue(20, due);
  CHECK(due == std::vector<size_t>{0});
}

TEST_CASE("deadline queue agrees with a sorted list under random moves", "[schedule][deadline]") {
  DeadlineQueue queue;
  std::vector<std::optional<uint64_t>> expected(50);
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  uint64_t now = 0;
  for (int step = 0; step < 5'000; ++step) {
    const size_t id = next() % expected.size();
    const uint64_t kind = next() % 10;
    if (kind < 6) {
      const uint64_t due = now + next() % 1'000;
      queue.Set(id, due);
      expected[id] = due;
    } else if (kind < 8) {
      queue.Remove(id);
      expected[id].reset();
    } else {
      now += next() % 200;
      std::vector<std::pair<uint64_t, size_t>> want;
      for (size_t i = 0; i < expected.size(); ++i) {
        if (expected[i] && *expected[i] <= now) {
          want.emplace_back(*expected[i], i);
          expected[i].reset();
        }
      }
      std::sort(want.begin(), want.end());
      std::vector<size_t> want_ids;
      for (const auto& entry : want) want_ids.push_back(entry.second);
      std::vector<size_t> due;
      queue.TakeDue(now, due);
      REQUIRE(due == want_ids);
    }
    std::optional<uint64_t> earliest;
    size_t count = 0;
    for (const auto& due : expected) {
      if (!due) continue;
      ++count;
      if (!earliest || *due < *earliest) earliest = due;
    }
    REQUIRE(queue.size() == count);
    REQUIRE(queue.NextDue() == earliest);
  }
}
