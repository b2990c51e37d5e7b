// Small string helpers shared by the config loader, rules and probes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rollguard {

std::string_view Trim(std::string_view text);

// Splits on runs of whitespace; no empty pieces.
std::vector<std::string> SplitWords(std::string_view text);

// Splits a command line into argv the way a POSIX shell would for words: whitespace
// separates, 'single' and "double" quotes group, backslash escapes outside single quotes.
// No expansion of any kind. Error on an unterminated quote or an empty command.
struct SplitCommandResult {
  std::vector<std::string> argv;
  std::string error;  // empty on success
};
SplitCommandResult SplitCommandLine(std::string_view text);

bool StartsWith(std::string_view text, std::string_view prefix);
bool EndsWith(std::string_view text, std::string_view suffix);

// True for names of probes, rules, actions, notifiers, breakers, servers: [a-z][a-z0-9_]*.
bool IsValidName(std::string_view name);

// Reads a whole file; false (with errno text in *error) when it cannot be read.
bool ReadWholeFile(const std::string& path, std::string* contents, std::string* error);

}  // namespace rollguard
