#include "common/strings.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace rollguard {

std::string_view Trim(std::string_view text) {
  const char* whitespace = " \t\r\n\f\v";
  const size_t begin = text.find_first_not_of(whitespace);
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find_last_not_of(whitespace);
  return text.substr(begin, end - begin + 1);
}

std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

SplitCommandResult SplitCommandLine(std::string_view text) {
  SplitCommandResult result;
  std::string current;
  bool in_word = false;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) result.argv.push_back(std::move(current));
      current.clear();
      in_word = false;
      ++i;
    } else if (c == '\'') {
      const size_t close = text.find('\'', i + 1);
      if (close == std::string_view::npos) {
        result.error = "unterminated single quote";
        return result;
      }
      current.append(text.substr(i + 1, close - i - 1));
      in_word = true;
      i = close + 1;
    } else if (c == '"') {
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '\\' && i + 1 < text.size() &&
            std::strchr("\"\\$`", text[i + 1]) != nullptr) {
          current.push_back(text[i + 1]);
          i += 2;
        } else if (text[i] == '"') {
          closed = true;
          ++i;
          break;
        } else {
          current.push_back(text[i++]);
        }
      }
      if (!closed) {
        result.error = "unterminated double quote";
        return result;
      }
      in_word = true;
    } else if (c == '\\' && i + 1 < text.size()) {
      current.push_back(text[i + 1]);
      in_word = true;
      i += 2;
    } else {
      current.push_back(c);
      in_word = true;
      ++i;
    }
  }
  if (in_word) result.argv.push_back(std::move(current));
  if (result.argv.empty()) result.error = "empty command";
  return result;
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool ReadWholeFile(const std::string& path, std::string* contents, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = std::strerror(errno);
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    *error = "read error";
    return false;
  }
  *contents = buffer.str();
  return true;
}

}  // namespace rollguard
