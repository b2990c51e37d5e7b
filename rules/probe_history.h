// ProbeHistory: the recent results of one probe, for the fields rules read from it.
//
// Samples are kept in a ring for `retention` (the longest window any rule reads on the
// probe, at least 2x its interval) and never more than `max_samples`; the oldest go first.
// Each sample stores one Cell per field slot the rules read (slot order is fixed when the
// rule set is compiled). Storage grows by doubling up to max_samples and is reused after
// that, so a steady probe stops allocating once its ring is full.
// Internal to rules/.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/time.h"

namespace rollguard {

struct Cell {
  enum class Kind : uint8_t { kMissing, kNumber, kString };
  Kind kind = Kind::kMissing;
  double number = 0;
  std::string text;  // kString
};

class ProbeHistory {
 public:
  ProbeHistory(size_t slots, Duration retention, size_t max_samples);

  // Drops samples older than `now - retention`, then appends a sample at `now` and
  // returns its cells (slots() of them, left as they were: the caller sets every one).
  Cell* Append(TimePoint now);

  size_t size() const { return size_; }
  size_t slots() const { return slots_; }
  size_t capacity() const { return capacity_; }
  // 0 is the oldest sample, size() - 1 the latest. REQUIRES: i < size().
  TimePoint time(size_t i) const { return times_[Physical(i)]; }
  const Cell* cells(size_t i) const { return cells_.data() + Physical(i) * slots_; }

 private:
  size_t Physical(size_t i) const { return (head_ + i) % capacity_; }
  void Grow();

  size_t slots_;
  Duration retention_;
  size_t max_samples_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
  std::vector<TimePoint> times_;
  std::vector<Cell> cells_;
};

}  // namespace rollguard
