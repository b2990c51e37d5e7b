// ProbeHistory: the recent results of one probe, for the fields rules read from it.
//
// Samples are kept in a ring for `retention` (the longest window any rule reads on the
// probe, at least 2x its interval) and never more than `max_samples`; the oldest go first.
// Each sample stores one Cell per field slot the rules read (slot order is fixed when the
// rule set is compiled). Storage starts at kFirstCapacity samples, grows by doubling up to
// max_samples and is reused after that, so a steady probe stops allocating once its ring
// is full.
//
// Memory: there is a ring per probe, so its size is paid thousands of times over. A probe
// no window reads keeps its latest sample only (max_samples 1); a window of at most 2x
// the interval keeps about 3 samples; the ring starts at 4 of them (or max_samples), and a
// cell is 24 bytes, its text (rare: json strings, systemd states) on the heap only when
// there is one. At 8 samples of 48-byte cells the rings were ~1.2 KB of every probe's
// ~10 KB (bench/RESULTS.md).
// Internal to rules/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"

namespace rollguard {

// A cell's text: empty until a string is first stored, and then reused, so a probe whose
// fields are all numbers carries a null pointer per cell instead of a std::string.
class CellText {
 public:
  CellText() = default;
  CellText(CellText&&) noexcept = default;
  CellText& operator=(CellText&&) noexcept = default;

  // Keeps the string's capacity: a field that reports the same text run after run does
  // not allocate.
  CellText& operator=(std::string_view text) {
    if (text_ == nullptr) {
      text_ = std::make_unique<std::string>(text);
    } else {
      text_->assign(text);
    }
    return *this;
  }
  std::string_view view() const { return text_ == nullptr ? std::string_view() : *text_; }
  operator std::string_view() const { return view(); }  // NOLINT: reads as the text
  friend bool operator==(const CellText& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const CellText& a, const CellText& b) { return a.view() == b.view(); }

 private:
  std::unique_ptr<std::string> text_;
};

struct Cell {
  enum class Kind : uint8_t { kMissing, kNumber, kString };
  Kind kind = Kind::kMissing;
  double number = 0;
  CellText text;  // kString
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
  // The ring's first size (max_samples if smaller): enough for a short window (2x the
  // interval, 3 samples).
  static constexpr size_t kFirstCapacity = 4;
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
