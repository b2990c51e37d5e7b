#include "probes/probe_keys.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/strings.h"

namespace rollguard {

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

ProbeKeys::ProbeKeys(const IniSection& section, const ProbeParseContext& context)
    : section_(section), context_(context) {}

std::string ProbeKeys::Title() const { return "[" + section_.header + "]"; }

void ProbeKeys::MarkKnown(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
}

const IniEntry* ProbeKeys::Single(std::string_view key) {
  MarkKnown(key);
  const IniEntry* found = nullptr;
  for (const IniEntry& entry : section_.entries) {
    if (entry.key != key) continue;
    if (found != nullptr) {
      ErrorAt(entry, "expected at most one value, got a second one (first at line " +
                         std::to_string(found->where.line) + ")");
      continue;
    }
    found = &entry;
  }
  return found;
}

std::vector<const IniEntry*> ProbeKeys::All(std::string_view key) {
  MarkKnown(key);
  std::vector<const IniEntry*> found;
  for (const IniEntry& entry : section_.entries) {
    if (entry.key == key) found.push_back(&entry);
  }
  return found;
}

const IniEntry* ProbeKeys::Required(std::string_view key) {
  const IniEntry* entry = Single(key);
  if (entry == nullptr) Error("missing required key \"" + std::string(key) + "\"");
  return entry;
}

std::optional<KeyValue> ProbeKeys::ResolveText(const IniEntry& entry, std::string_view text) {
  if (!StartsWith(text, "env:")) {
    return KeyValue{std::string(text), false, Quoted(text)};
  }
  const std::string name(Trim(text.substr(4)));
  const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
  if (value == nullptr) {
    ErrorAt(entry, "expected environment variable " + Quoted(name) + " to be set, got " +
                       (name.empty() ? "no variable name" : "it unset"));
    return std::nullopt;
  }
  if (std::strpbrk(value, "\r\n") != nullptr) {
    ErrorAt(entry, "expected a single-line value in env:" + name + ", got a line break");
    return std::nullopt;
  }
  return KeyValue{value, true, "the value of env:" + name};
}

std::optional<KeyValue> ProbeKeys::Resolve(const IniEntry& entry) {
  return ResolveText(entry, entry.value);
}

std::string ProbeKeys::Path(std::string_view path) const {
  if (path.empty() || path.front() == '/' || context_.base_directory.empty()) {
    return std::string(path);
  }
  std::string base = context_.base_directory;
  if (base.back() != '/') base += '/';
  return base + std::string(path);
}

std::optional<std::string> ProbeKeys::Secret(std::string_view key) {
  const IniEntry* entry = Single(key);
  if (entry == nullptr) return std::nullopt;
  if (StartsWith(entry->value, "env:")) {
    auto value = Resolve(*entry);
    if (!value) return std::nullopt;
    return std::string(Trim(value->text));
  }
  const std::string path = Path(entry->value);
  std::string contents;
  std::string error;
  if (!ReadWholeFile(path, &contents, &error)) {
    ErrorAt(*entry, "expected a readable file, got " + Quoted(path) + " (" + error + ")");
    return std::nullopt;
  }
  const std::string_view trimmed = Trim(contents);
  if (trimmed.empty()) {
    ErrorAt(*entry, "expected a secret in " + Quoted(path) + ", got an empty file");
    return std::nullopt;
  }
  if (trimmed.find_first_of("\r\n") != std::string_view::npos) {
    ErrorAt(*entry, "expected a single-line secret in " + Quoted(path) + ", got several lines");
    return std::nullopt;
  }
  return std::string(trimmed);
}

Duration ProbeKeys::DurationValue(std::string_view key, Duration fallback) {
  return DurationAt(Single(key), fallback);
}

Duration ProbeKeys::DurationAt(const IniEntry* entry, Duration fallback) {
  if (entry == nullptr) return fallback;
  auto parsed = ParseDuration(entry->value);
  if (!parsed) {
    ErrorAt(*entry, "expected a duration like 250ms, 5s or 1m30s, got " + Quoted(entry->value));
    return fallback;
  }
  return *parsed;
}

bool ProbeKeys::Bool(std::string_view key, bool fallback) {
  const IniEntry* entry = Single(key);
  if (entry == nullptr) return fallback;
  if (entry->value == "true" || entry->value == "yes" || entry->value == "on") return true;
  if (entry->value == "false" || entry->value == "no" || entry->value == "off") return false;
  ErrorAt(*entry, "expected true or false, got " + Quoted(entry->value));
  return fallback;
}

void ProbeKeys::ErrorAt(const IniEntry& entry, const std::string& message) {
  errors_.push_back(entry.where.ToString() + ": " + Title() + " " + entry.key + ": " + message);
}

void ProbeKeys::Error(const std::string& message) {
  errors_.push_back(section_.where.ToString() + ": " + Title() + ": " + message);
}

void ProbeKeys::CheckUnknown() {
  std::string allowed;
  for (const std::string& key : known_) allowed += (allowed.empty() ? "" : ", ") + key;
  for (const IniEntry& entry : section_.entries) {
    if (std::find(known_.begin(), known_.end(), entry.key) == known_.end()) {
      ErrorAt(entry, "unknown key (expected one of: " + allowed + ")");
    }
  }
}

}  // namespace rollguard
