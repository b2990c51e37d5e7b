#include "common/ini.h"

#include <ini.h>

#include <algorithm>
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
  int line = 0;          // number of the line most recently handed to inih
  std::string raw_line;  // its text, without the newline
  // Pieces of an over-long line still to hand to inih (see SplitLongLine).
  std::vector<std::string> pending;
  std::string path;
  SourceFile file;  // `path`, shared by every location in the document
  IniDocument document;
  std::string error;  // first error, with location
};

// The text before an inline comment (";" after whitespace), right-trimmed.
std::string_view WithoutInlineComment(std::string_view text) {
  for (size_t i = 1; i < text.size(); ++i) {
    if (text[i] == ';' && std::isspace(static_cast<unsigned char>(text[i - 1]))) {
      text = text.substr(0, i);
      break;
    }
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

// Debian's inih is built with a 200-byte line buffer. A longer `key = value` line is handed
// to it as the line up to a single space followed by indented continuation lines, which
// the handler joins back with that one space: the value arrives unchanged. Over-long
// comments become empty comments. False when there is no single space to split at.
bool SplitLongLine(std::string_view line, size_t limit, std::vector<std::string>* pieces) {
  const std::string_view trimmed = Trim(line);
  if (!trimmed.empty() && (trimmed.front() == '#' || trimmed.front() == ';')) {
    pieces->push_back("#");
    return true;
  }
  // inih drops an inline comment on a key line but not on continuation lines: drop it
  // here so the pieces carry exactly the value inih would have seen on one line.
  line = WithoutInlineComment(line);
  const size_t equals = line.find('=');
  size_t start = 0;
  bool first = true;
  while (start < line.size()) {
    const std::string indent = first ? "" : "  ";
    const size_t room = limit - indent.size();
    if (line.size() - start <= room) {
      pieces->push_back(indent + std::string(line.substr(start)));
      return true;
    }
    // The last single space (non-space on both sides) that keeps this piece in the limit
    // and, for the first piece, leaves the key and `=` in it.
    size_t split = std::string_view::npos;
    for (size_t i = start + room; i > start + 1; --i) {
      if (line[i - 1] == ' ' && line[i - 2] != ' ' && i < line.size() && line[i] != ' ' &&
          (!first || (equals != std::string_view::npos && i - 1 > equals + 1))) {
        split = i - 1;
        break;
      }
    }
    if (split == std::string_view::npos) return false;
    pieces->push_back(indent + std::string(line.substr(start, split - start)));
    start = split + 1;
    first = false;
  }
  return true;
}

char* HandOver(ParseState* state, std::string_view line, char* buffer) {
  state->raw_line.assign(line);
  std::memcpy(buffer, line.data(), line.size());
  buffer[line.size()] = '\n';
  buffer[line.size() + 1] = '\0';
  return buffer;
}

char* ReadLine(char* buffer, int size, void* stream) {
  auto* state = static_cast<ParseState*>(stream);
  if (!state->error.empty()) return nullptr;
  if (!state->pending.empty()) {
    const std::string piece = std::move(state->pending.front());
    state->pending.erase(state->pending.begin());
    return HandOver(state, piece, buffer);
  }
  if (state->offset >= state->text.size()) return nullptr;
  size_t end = state->text.find('\n', state->offset);
  if (end == std::string_view::npos) end = state->text.size();
  std::string_view line = state->text.substr(state->offset, end - state->offset);
  state->offset = end + 1;
  ++state->line;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t limit = std::min<size_t>(static_cast<size_t>(size - 2), kInihLineLimit);
  if (line.size() > limit) {
    std::vector<std::string> pieces;
    const std::string_view trimmed = Trim(line);
    if (trimmed.empty() || trimmed.front() == '[' || !SplitLongLine(line, limit, &pieces)) {
      state->error = state->path + ":" + std::to_string(state->line) + ": line is " +
                     std::to_string(line.size()) +
                     " characters long with no space to break it at; continue the value on "
                     "indented lines below its key";
      return nullptr;
    }
    state->pending.assign(pieces.begin() + 1, pieces.end());
    return HandOver(state, pieces.front(), buffer);
  }
  HandOver(state, line, buffer);
  const std::string_view trimmed = Trim(line);
  if (!trimmed.empty() && trimmed.front() == '[') {
    // A section header: record it here so sections without keys exist too.
    IniSection section;
    const size_t close = trimmed.find(']');
    section.header = std::string(Trim(
        trimmed.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1)));
    const std::vector<std::string> words = SplitWords(section.header);
    if (!words.empty()) section.kind = words[0];
    if (words.size() > 1) section.name = words[1];
    if (words.size() > 2 || close == std::string_view::npos || words.empty()) {
      state->error = state->path + ":" + std::to_string(state->line) +
                     ": expected a section header like [kind] or [kind name], got " +
                     std::string(trimmed);
      return nullptr;
    }
    section.where = {state->file, state->line};
    state->document.sections.push_back(std::move(section));
  }
  return buffer;
}

int HandleValue(void* user, const char* /*section*/, const char* name, const char* value) {
  auto* state = static_cast<ParseState*>(user);
  const SourceLocation where{state->file, state->line};
  if (state->document.sections.empty()) {
    state->error = where.ToString() + ": key \"" + name + "\" is outside any [section]";
    return 0;
  }
  IniSection& section = state->document.sections.back();
  const bool indented =
      !state->raw_line.empty() && std::isspace(static_cast<unsigned char>(state->raw_line[0]));
  if (indented && !section.entries.empty() && section.entries.back().key == name) {
    // inih keeps inline comments on continuation lines; the dialect drops them everywhere.
    const std::string_view continued = WithoutInlineComment(value);
    IniEntry& previous = section.entries.back();
    if (!previous.value.empty() && !continued.empty()) previous.value += ' ';
    previous.value += continued;
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
  state.file = path;
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
