#include "daemon/schedule.h"

#include <algorithm>

namespace rollguard {

uint64_t InitialOffset(std::string_view probe_name, uint64_t interval_us) {
  // FNV-1a: stable across runs and builds, unlike std::hash.
  uint64_t hash = 1469598103934665603ULL;
  for (char c : probe_name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return interval_us == 0 ? 0 : hash % interval_us;
}

uint64_t NextSlotAfter(uint64_t first_us, uint64_t interval_us, uint64_t now_us) {
  if (now_us < first_us) return first_us;
  const uint64_t slots_passed = (now_us - first_us) / interval_us + 1;
  return first_us + slots_passed * interval_us;
}

void ScheduleQueue::Add(size_t id, uint64_t first_us, uint64_t interval_us) {
  heap_.push_back(Entry{first_us, first_us, interval_us, id});
  std::push_heap(heap_.begin(), heap_.end(), &ScheduleQueue::Later);
}

void ScheduleQueue::Clear() { heap_.clear(); }

void ScheduleQueue::TakeDue(uint64_t now_us, std::vector<size_t>& due) {
  while (!heap_.empty() && heap_.front().due_us <= now_us) {
    std::pop_heap(heap_.begin(), heap_.end(), &ScheduleQueue::Later);
    Entry& entry = heap_.back();
    due.push_back(entry.id);
    entry.due_us = NextSlotAfter(entry.first_us, entry.interval_us, now_us);
    std::push_heap(heap_.begin(), heap_.end(), &ScheduleQueue::Later);
  }
}

std::optional<uint64_t> ScheduleQueue::NextDue() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().due_us;
}

}  // namespace rollguard
