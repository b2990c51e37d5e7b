// ProbeKeys: reading the keys of one [probe NAME] section, for the per-type parsers.
//
// Internal to probes/. Every key read through it is marked known; CheckUnknown() then
// reports the others (typos are errors). Errors are collected, each one line of the form
// "file:line: [probe NAME] key: expected ..., got ...", so `rollguard check` shows all.
//
// Secrets (spec §1): a value `env:NAME` is read from the environment, and Secret() reads
// a `*_file` key's value from the named file (trimmed). Values that came from a secret are
// never quoted back in an error message.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "common/time.h"
#include "probes/probe.h"

namespace rollguard {

// A value after secret resolution.
struct KeyValue {
  std::string text;
  bool secret = false;
  // How an error shows the value: "\"text\"", or "the value of env:NAME" for secrets.
  std::string shown;
};

class ProbeKeys {
 public:
  // Both must outlive this object.
  ProbeKeys(const IniSection& section, const ProbeParseContext& context);

  // "[probe api]".
  std::string Title() const;
  const IniSection& section() const { return section_; }
  const ProbeParseContext& context() const { return context_; }

  // The entry of a key that may appear at most once (a repeat is an error); nullptr when
  // absent. The pointer stays valid as long as the section.
  const IniEntry* Single(std::string_view key);
  // Every entry of a repeatable key, in order.
  std::vector<const IniEntry*> All(std::string_view key);
  // Like Single(), recording "missing required key" against the section when absent.
  const IniEntry* Required(std::string_view key);

  // `entry`'s value with `env:NAME` resolved; nullopt (error recorded) when NAME is unset.
  std::optional<KeyValue> Resolve(const IniEntry& entry);
  // Resolves a value that is part of an entry (e.g. a header's value): `env:NAME` allowed.
  std::optional<KeyValue> ResolveText(const IniEntry& entry, std::string_view text);
  // The value of a `*_file` key: the trimmed contents of the file it names (or of
  // `env:NAME`). nullopt when absent, or on error (recorded).
  std::optional<std::string> Secret(std::string_view key);
  // `path` made absolute against the parse context's base directory.
  std::string Path(std::string_view path) const;

  // Typed readers: `fallback` when absent or malformed (an error is then recorded).
  Duration DurationValue(std::string_view key, Duration fallback);
  Duration DurationAt(const IniEntry* entry, Duration fallback);  // entry may be nullptr
  bool Bool(std::string_view key, bool fallback);

  // Records "file:line: [probe NAME] key: message".
  void ErrorAt(const IniEntry& entry, const std::string& message);
  // Records "file:line: [probe NAME]: message" at the section header.
  void Error(const std::string& message);

  // Records every key not read through this object as unknown.
  void CheckUnknown();

  bool has_errors() const { return !errors_.empty(); }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void MarkKnown(std::string_view key);

  const IniSection& section_;
  const ProbeParseContext& context_;
  std::vector<std::string> known_;
  std::vector<std::string> errors_;
};

// Quotes a value for an error message: "got \"x\"".
std::string Quoted(std::string_view text);

}  // namespace rollguard
