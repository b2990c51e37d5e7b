#include "daemon/schedule.h"

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

}  // namespace rollguard
