#include "common/section_reader.h"

#include <algorithm>
#include <charconv>

namespace rollguard {

SectionReader::SectionReader(const IniSection& section, std::vector<std::string>* errors)
    : section_(section), errors_(errors) {}

std::string SectionReader::Title() const { return "[" + section_.header + "]"; }

void SectionReader::MarkKnown(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
}

std::optional<IniEntry> SectionReader::Single(std::string_view key) {
  MarkKnown(key);
  std::optional<IniEntry> found;
  for (const IniEntry& entry : section_.entries) {
    if (entry.key != key) continue;
    if (found) {
      ErrorAt(entry,
              "may appear only once (first set at line " + std::to_string(found->where.line) + ")");
      continue;
    }
    found = entry;
  }
  return found;
}

std::vector<IniEntry> SectionReader::All(std::string_view key) {
  MarkKnown(key);
  std::vector<IniEntry> found;
  for (const IniEntry& entry : section_.entries) {
    if (entry.key == key) found.push_back(entry);
  }
  return found;
}

std::string SectionReader::String(std::string_view key, std::string fallback) {
  const auto entry = Single(key);
  return entry ? entry->value : fallback;
}

Duration SectionReader::DurationValue(std::string_view key, Duration fallback) {
  const auto entry = Single(key);
  if (!entry) return fallback;
  auto parsed = ParseDuration(entry->value);
  if (!parsed) {
    ErrorAt(*entry, parsed.error().message);
    return fallback;
  }
  return *parsed;
}

bool SectionReader::Bool(std::string_view key, bool fallback) {
  const auto entry = Single(key);
  if (!entry) return fallback;
  if (entry->value == "true" || entry->value == "yes" || entry->value == "on") return true;
  if (entry->value == "false" || entry->value == "no" || entry->value == "off") return false;
  ErrorAt(*entry, "expected true or false, got \"" + entry->value + "\"");
  return fallback;
}

int64_t SectionReader::Integer(std::string_view key, int64_t fallback, int64_t min, int64_t max) {
  const auto entry = Single(key);
  if (!entry) return fallback;
  int64_t value = 0;
  const char* begin = entry->value.data();
  const char* end = begin + entry->value.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || value < min || value > max) {
    ErrorAt(*entry, "expected a whole number from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", got \"" + entry->value + "\"");
    return fallback;
  }
  return value;
}

std::optional<IniEntry> SectionReader::Required(std::string_view key) {
  auto entry = Single(key);
  if (!entry) Error("missing required key \"" + std::string(key) + "\"");
  return entry;
}

void SectionReader::ErrorAt(const IniEntry& entry, const std::string& message) {
  errors_->push_back(entry.where.ToString() + ": " + Title() + " " + entry.key + ": " + message);
}

void SectionReader::Error(const std::string& message) {
  errors_->push_back(section_.where.ToString() + ": " + Title() + ": " + message);
}

void SectionReader::Finish() {
  for (const IniEntry& entry : section_.entries) {
    if (std::find(known_.begin(), known_.end(), entry.key) == known_.end()) {
      std::string allowed;
      for (const std::string& key : known_) allowed += (allowed.empty() ? "" : ", ") + key;
      ErrorAt(entry, "unknown key (expected one of: " + allowed + ")");
      // Report each unknown key once per line; keep going to show all typos.
    }
  }
}

}  // namespace rollguard
