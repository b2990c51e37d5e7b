#include "common/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace rollguard {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t millis;
};
// Longest suffix first where one is a prefix of another ("ms" before "m").
constexpr Unit kUnits[] = {
    {"d", 86'400'000}, {"h", 3'600'000}, {"ms", 1}, {"m", 60'000}, {"s", 1'000}};
// Order units must appear in within one duration: d h m s ms.
int UnitRank(std::string_view suffix) {
  if (suffix == "d") return 0;
  if (suffix == "h") return 1;
  if (suffix == "m") return 2;
  if (suffix == "s") return 3;
  return 4;
}

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  const std::string expected =
      "expected a duration like 250ms, 5s, 10m, 1h, 1d or 1m30s, got \"" + std::string(text) + "\"";
  if (text == "0") return Duration{0};
  if (text.empty()) return Fail(expected);
  int64_t total = 0;
  int last_rank = -1;
  size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return Fail(expected);
    int64_t number = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      number = number * 10 + (text[i] - '0');
      if (number > 1'000'000'000'000)
        return Fail("duration \"" + std::string(text) + "\" is too long");
      ++i;
    }
    const Unit* unit = nullptr;
    for (const Unit& candidate : kUnits) {
      if (text.substr(i, candidate.suffix.size()) == candidate.suffix) {
        unit = &candidate;
        break;
      }
    }
    if (unit == nullptr) return Fail(expected);
    const int rank = UnitRank(unit->suffix);
    if (rank <= last_rank) return Fail(expected + " (units must go from largest to smallest)");
    last_rank = rank;
    i += unit->suffix.size();
    // Bounded before multiplying: 777777777777d would overflow int64 milliseconds.
    constexpr int64_t kMaxMillis = 1'000'000'000'000'000;  // about 31,700 years
    if (number > (kMaxMillis - total) / unit->millis) {
      return Fail("duration \"" + std::string(text) + "\" is too long");
    }
    total += number * unit->millis;
  }
  return Duration{total};
}

std::string FormatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const Unit ordered[] = {
      {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}};
  for (const Unit& unit : ordered) {
    if (ms >= unit.millis) {
      out += std::to_string(ms / unit.millis);
      out += unit.suffix;
      ms %= unit.millis;
    }
  }
  return out;
}

std::string FormatIso8601(TimePoint t) {
  const int64_t ms = ToMillis(t);
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buffer;
}

}  // namespace rollguard
