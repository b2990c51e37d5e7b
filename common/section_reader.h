// SectionReader: typed access to one INI section's keys, with errors that name
// file:line, the section and the key, and say what was expected.
//
// Every key a caller reads is marked as known; Finish() then reports the keys nobody
// read as unknown (typos are errors, not silently ignored). Errors are collected, not
// thrown, so one `rollguard check` run shows all of them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "common/time.h"

namespace rollguard {

class SectionReader {
 public:
  // `errors` collects messages; it must outlive the reader.
  SectionReader(const IniSection& section, std::vector<std::string>* errors);

  // "[probe api]": how the section is named in messages.
  std::string Title() const;
  const IniSection& section() const { return section_; }

  // The value of a key that may appear at most once; nullopt when absent.
  std::optional<IniEntry> Single(std::string_view key);
  // Every value of a repeatable key, in order.
  std::vector<IniEntry> All(std::string_view key);

  // Typed readers: return `fallback` (and record an error) when the value is malformed.
  std::string String(std::string_view key, std::string fallback = "");
  Duration DurationValue(std::string_view key, Duration fallback);
  bool Bool(std::string_view key, bool fallback);
  int64_t Integer(std::string_view key, int64_t fallback, int64_t min, int64_t max);
  // A required key: records "missing key" against the section header when absent.
  std::optional<IniEntry> Required(std::string_view key);

  // Records an error about `entry`: "file:line: [kind name] key: message".
  void ErrorAt(const IniEntry& entry, const std::string& message);
  // Records an error about the section header line.
  void Error(const std::string& message);

  // Reports every key not read through this reader as unknown.
  void Finish();

 private:
  void MarkKnown(std::string_view key);

  const IniSection& section_;
  std::vector<std::string>* errors_;
  std::vector<std::string> known_;
};

}  // namespace rollguard
