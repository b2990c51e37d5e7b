// Fixed-rate probe schedules, as pure arithmetic on monotonic microseconds; and the
// queue of one-off deadlines at which rules must be evaluated again.
//
// Run k of a probe is due at first + k * interval, whatever happened to run k-1: a slow
// probe or a busy loop never pushes later runs (no drift), and a run whose slot was missed
// entirely is skipped rather than bunched up. First slots are spread over the interval by
// a hash of the probe's name, so a thousand probes with the same interval do not all fire
// at once, and the spread is the same after every restart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace rollguard {

// Offset in [0, interval_us) for the first run of the named probe.
uint64_t InitialOffset(std::string_view probe_name, uint64_t interval_us);

// The first slot strictly after `now_us` on the grid first_us + k * interval_us.
// REQUIRES: interval_us > 0.
uint64_t NextSlotAfter(uint64_t first_us, uint64_t interval_us, uint64_t now_us);

// Every probe's next slot in one min-heap, so the loop needs a single timer for all of
// them: one wake-up starts every run that is due, instead of one timer source, one
// dispatch and one timerfd re-arm per probe (10,000 probes at 1 s were 10,000 wake-ups a
// second). Entries are identified by the caller's index. Not thread-safe.
class ScheduleQueue {
 public:
  // Adds entry `id`, first due at `first_us`, then every `interval_us` on that grid.
  // REQUIRES: interval_us > 0.
  void Add(size_t id, uint64_t first_us, uint64_t interval_us);

  // Removes every entry.
  void Clear();

  // Appends to `due` the ids of the entries due at or before `now_us`, earliest slot
  // first, and moves each to its first slot after `now_us` (missed slots are skipped).
  void TakeDue(uint64_t now_us, std::vector<size_t>& due);

  // When the earliest entry is due; nullopt when there is none.
  std::optional<uint64_t> NextDue() const;

  size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    uint64_t due_us;
    uint64_t first_us;
    uint64_t interval_us;
    size_t id;
  };
  // std::push_heap and friends with this order keep the earliest slot at the front; equal
  // slots go by id so the order of a batch never depends on heap history.
  static bool Later(const Entry& a, const Entry& b) {
    return a.due_us != b.due_us ? a.due_us > b.due_us : a.id > b.id;
  }

  std::vector<Entry> heap_;
};

// At most one pending deadline per id (the daemon's ids are rule indexes), earliest first,
// so the loop needs a single timer for all of them. Setting an id again moves its one
// entry instead of adding another: a rule whose deadline moves on every evaluation (it
// always has one while its data is fresh) keeps the queue at one entry per rule. Units
// are the caller's (the daemon uses milliseconds since the epoch). Not thread-safe.
class DeadlineQueue {
 public:
  // Sets id's deadline to `due`, replacing any earlier one.
  void Set(size_t id, uint64_t due);
  // Drops id's deadline, if it has one.
  void Remove(size_t id);
  // Removes every entry.
  void Clear();

  // Appends to `due` the ids whose deadlines are at or before `now`, earliest first
  // (equal deadlines by id), and removes them: each is handed out once.
  void TakeDue(uint64_t now, std::vector<size_t>& due);

  // The earliest deadline; nullopt when there is none.
  std::optional<uint64_t> NextDue() const;

  size_t size() const { return heap_.size(); }

 private:
  static constexpr size_t kAbsent = static_cast<size_t>(-1);
  struct Entry {
    uint64_t due;
    size_t id;
  };
  static bool Before(const Entry& a, const Entry& b) {
    return a.due != b.due ? a.due < b.due : a.id < b.id;
  }
  void Place(size_t at, Entry entry);  // writes heap_[at] and records where the id is
  void SiftUp(size_t at);
  void SiftDown(size_t at);
  void RemoveAt(size_t at);

  std::vector<Entry> heap_;
  std::vector<size_t> position_;  // id -> index into heap_, or kAbsent
};

}  // namespace rollguard
