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

void DeadlineQueue::Place(size_t at, Entry entry) {
  position_[entry.id] = at;
  heap_[at] = entry;
}

void DeadlineQueue::SiftUp(size_t at) {
  const Entry entry = heap_[at];
  while (at > 0) {
    const size_t parent = (at - 1) / 2;
    if (!Before(entry, heap_[parent])) break;
    Place(at, heap_[parent]);
    at = parent;
  }
  Place(at, entry);
}

void DeadlineQueue::SiftDown(size_t at) {
  const Entry entry = heap_[at];
  for (;;) {
    size_t child = 2 * at + 1;
    if (child >= heap_.size()) break;
    if (child + 1 < heap_.size() && Before(heap_[child + 1], heap_[child])) ++child;
    if (!Before(heap_[child], entry)) break;
    Place(at, heap_[child]);
    at = child;
  }
  Place(at, entry);
}

void DeadlineQueue::RemoveAt(size_t at) {
  position_[heap_[at].id] = kAbsent;
  const Entry last = heap_.back();
  heap_.pop_back();
  if (at == heap_.size()) return;
  Place(at, last);
  SiftDown(at);
  SiftUp(position_[last.id]);
}

void DeadlineQueue::Set(size_t id, uint64_t due) {
  if (id >= position_.size()) position_.resize(id + 1, kAbsent);
  const size_t at = position_[id];
  if (at == kAbsent) {
    heap_.push_back(Entry{due, id});
    SiftUp(heap_.size() - 1);
    return;
  }
  if (heap_[at].due == due) return;
  const bool earlier = due < heap_[at].due;
  heap_[at].due = due;
  if (earlier) {
    SiftUp(at);
  } else {
    SiftDown(at);
  }
}

void DeadlineQueue::Remove(size_t id) {
  if (id < position_.size() && position_[id] != kAbsent) RemoveAt(position_[id]);
}

void DeadlineQueue::Clear() {
  heap_.clear();
  position_.clear();
}

void DeadlineQueue::TakeDue(uint64_t now, std::vector<size_t>& due) {
  while (!heap_.empty() && heap_.front().due <= now) {
    due.push_back(heap_.front().id);
    RemoveAt(0);
  }
}

std::optional<uint64_t> DeadlineQueue::NextDue() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().due;
}

}  // namespace rollguard
