// Reading INI files in inih's dialect, keeping where every value came from.
//
// The dialect (what users write in rollguard.conf and *.rules files):
//   [kind name]          a section; `name` is optional ("[breaker]", "[probe api]")
//   key = value          repeated keys are kept in order; callers decide whether a
//                        repeat is allowed
//   # or ; at line start a comment
//   value ; comment      an inline comment needs whitespace before the `;`
//   <indented line>      continues the previous key's value (joined with one space),
//                        the way long PromQL queries are written
// inih as Debian builds it reads lines into a 200-byte buffer; longer lines are handed to
// it in pieces that join back to the same value (see ini.cc), never silently truncated.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace rollguard {

// The name of a config file, shared by every location in it. Probes, rules and their
// conditions each keep where they were written for as long as the configuration runs, and
// a path copied into each of them was ~5 allocations of 50 to 100 bytes per probe and
// rule (bench/RESULTS.md); a copy of a SourceFile is a reference count.
class SourceFile {
 public:
  SourceFile() = default;
  SourceFile(const std::string& path)  // NOLINT: implicit, a path is a SourceFile
      : path_(path.empty() ? nullptr : std::make_shared<const std::string>(path)) {}
  SourceFile(const char* path) : SourceFile(std::string(path)) {}  // NOLINT: as above

  const std::string& str() const { return path_ != nullptr ? *path_ : Empty(); }
  operator const std::string&() const { return str(); }  // NOLINT: reads as the path
  bool empty() const { return path_ == nullptr; }

 private:
  static const std::string& Empty() {
    static const std::string empty;
    return empty;
  }
  std::shared_ptr<const std::string> path_;
};

struct SourceLocation {
  SourceFile file;
  int line = 0;

  // "file:line" — the prefix every config error starts with.
  std::string ToString() const { return file.str() + ":" + std::to_string(line); }
};

struct IniEntry {
  std::string key;
  std::string value;
  SourceLocation where;  // the line of the key (not of a continuation)
};

struct IniSection {
  std::string kind;    // first word of the header: "probe", "rule", "daemon", ...
  std::string name;    // second word, empty when absent
  std::string header;  // the header as written between the brackets, trimmed
  SourceLocation where;
  std::vector<IniEntry> entries;
};

struct IniDocument {
  std::string path;
  std::vector<IniSection> sections;
};

// The longest line handed to inih in one piece.
inline constexpr size_t kInihLineLimit = 198;

// Parses `text` as if it were the file `path` (path is used only in error messages).
// Errors: "path:line: <what was expected>".
Result<IniDocument> ParseIni(std::string_view text, const std::string& path);

// Reads and parses the file at `path`.
Result<IniDocument> ReadIniFile(const std::string& path);

}  // namespace rollguard
