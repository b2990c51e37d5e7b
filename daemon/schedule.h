// Fixed-rate probe schedules, as pure arithmetic on monotonic microseconds.
//
// Run k of a probe is due at first + k * interval, whatever happened to run k-1: a slow
// probe or a busy loop never pushes later runs (no drift), and a run whose slot was missed
// entirely is skipped rather than bunched up. First slots are spread over the interval by
// a hash of the probe's name, so a thousand probes with the same interval do not all fire
// at once, and the spread is the same after every restart.
#pragma once

#include <cstdint>
#include <string_view>

namespace rollguard {

// Offset in [0, interval_us) for the first run of the named probe.
uint64_t InitialOffset(std::string_view probe_name, uint64_t interval_us);

// The first slot strictly after `now_us` on the grid first_us + k * interval_us.
// REQUIRES: interval_us > 0.
uint64_t NextSlotAfter(uint64_t first_us, uint64_t interval_us, uint64_t now_us);

}  // namespace rollguard
