#include "common/ini.h"

#include <ini.h>

#include <cstring>

#include "common/strings.h"

namespace rollguard {
namespace {

// inih reads through this reader so we know each line's number and raw text: inih itself
// reports neither to the handler in Debian's build, and cannot tell a continuation line
// from a repeated key.
struct ParseState {
  std::string_view text;
  size_t offset = 0;
  int line = 0;           // number of the line most recently handed to inih
  std::string raw_line;   // its text, without the newline
  std::string path;
  IniDocument document;
  std::string error;      // first error, with location
};

char* ReadLine(char* buffer, int size, void* stream) {
  auto* state = static_cast<ParseState*>(stream);
  if (!state->error.empty() || state->offset >= state->text.size()) return nullptr;
  size_t end = state->text.find('\n', state->offset);
  if (end == std::string_view::npos) end = state->text.size();
  std::string_view line = state->text.substr(state->offset, end - state->offset);
  state->offset = end + 1;
  ++state->line;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > static_cast<size_t>(size - 2) || line.size() > kMaxLineLength) {
    state->error = state->path + ":" + std::to_string(state->line) + ": line is " +
                   std::to_string(line.size()) + " characters long; the limit is " +
                   std::to_string(kMaxLineLength) +
                   " (continue a long value on indented lines below its key)";
    return nullptr;
  }
  state->raw_line.assign(line);
  std::memcpy(buffer, line.data(), line.size());
  buffer[line.size()] = '\n';
  buffer[line.size() + 1] = '\0';
  const std::string_view trimmed = Trim(line);
  if (!trimmed.empty() && trimmed.front() == '[') {
    // A section header: record it here so sections without keys exist too.
    IniSection section;
    const size_t close = trimmed.find(']');
    section.header = std::string(Trim(trimmed.substr(1, close == std::string_view::npos
                                                            ? std::string_view::npos
                                                            : close - 1)));
    const std::vector<std::string> words = SplitWords(section.header);
    if (!words.empty()) section.kind = words[0];
    if (words.size() > 1) section.name = words[1];
    if (words.size() > 2 || close == std::string_view::npos || words.empty()) {
      state->error = state->path + ":" + std::to_string(state->line) +
                     ": expected a section header like [kind] or [kind name], got " +
                     std::string(trimmed);
      return nullptr;
    }
    section.where = {state->path, state->line};
    state->document.sections.push_back(std::move(section));
  }
  return buffer;
}

int HandleValue(void* user, const char* /*section*/, const char* name, const char* value) {
  auto* state = static_cast<ParseState*>(user);
  const SourceLocation where{state->path, state->line};
  if (state->document.sections.empty()) {
    state->error = where.ToString() + ": key \"" + name + "\" is outside any [section]";
    return 0;
  }
  IniSection& section = state->document.sections.back();
  const bool indented =
      !state->raw_line.empty() && std::isspace(static_cast<unsigned char>(state->raw_line[0]));
  if (indented && !section.entries.empty() && section.entries.back().key == name) {
    IniEntry& previous = section.entries.back();
    if (!previous.value.empty()) previous.value += ' ';
    previous.value += value;
    return 1;
  }
  section.entries.push_back(IniEntry{name, value, where});
  return 1;
}

}  // namespace

Result<IniDocument> ParseIni(std::string_view text, const std::string& path) {
  ParseState state;
  state.text = text;
  state.path = path;
  state.document.path = path;
  const int result = ini_parse_stream(&ReadLine, &state, &HandleValue, &state);
  if (!state.error.empty()) return Fail(state.error);
  if (result > 0) {
    return Fail(path + ":" + std::to_string(result) +
                ": expected \"key = value\", a [section] header or a comment");
  }
  if (result < 0) return Fail(path + ": could not be parsed");
  return std::move(state.document);
}

Result<IniDocument> ReadIniFile(const std::string& path) {
  std::string contents;
  std::string error;
  if (!ReadWholeFile(path, &contents, &error)) {
    return Fail(path + ": cannot read: " + error);
  }
  return ParseIni(contents, path);
}

}  // namespace rollguard
