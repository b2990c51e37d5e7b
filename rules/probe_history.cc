#include "rules/probe_history.h"

#include <algorithm>
#include <utility>

namespace rollguard {

ProbeHistory::ProbeHistory(size_t slots, Duration retention, size_t max_samples)
    : slots_(slots), retention_(retention), max_samples_(std::max<size_t>(max_samples, 1)) {}

void ProbeHistory::Grow() {
  const size_t new_capacity = std::min(max_samples_, std::max(kFirstCapacity, capacity_ * 2));
  std::vector<TimePoint> times(new_capacity);
  std::vector<Cell> cells(new_capacity * slots_);
  for (size_t i = 0; i < size_; ++i) {
    times[i] = time(i);
    for (size_t s = 0; s < slots_; ++s) {
      cells[i * slots_ + s] = std::move(cells_[Physical(i) * slots_ + s]);
    }
  }
  times_ = std::move(times);
  cells_ = std::move(cells);
  capacity_ = new_capacity;
  head_ = 0;
}

Cell* ProbeHistory::Append(TimePoint now) {
  while (size_ > 0 && time(0) < now - retention_) {
    head_ = (head_ + 1) % capacity_;
    --size_;
  }
  if (size_ == capacity_) {
    if (capacity_ < max_samples_) {
      Grow();
    } else {
      head_ = (head_ + 1) % capacity_;  // full at the cap: the oldest sample goes
      --size_;
    }
  }
  const size_t index = Physical(size_);
  ++size_;
  times_[index] = now;
  return cells_.data() + index * slots_;
}

}  // namespace rollguard
