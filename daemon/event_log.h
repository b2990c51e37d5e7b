// EventLog: where the daemon says what happened.
//
// Under systemd (JOURNAL_STREAM set) every event goes to journald as a structured entry
// with MESSAGE, PRIORITY and the spec's fields (ROLLGUARD_RULE, ROLLGUARD_PROBE,
// ROLLGUARD_GRADE, ROLLGUARD_ACTION, ...), so `journalctl ROLLGUARD_RULE=api` works.
// Otherwise it goes to stderr through spdlog, one line per event, with the fields
// appended as key=value so the same facts are visible in a terminal.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rollguard {

using LogFields = std::vector<std::pair<std::string, std::string>>;

enum class LogLevel { kDebug, kInfo, kWarning, kError };

class EventLog {
 public:
  virtual ~EventLog() = default;
  virtual void Write(LogLevel level, const std::string& message, const LogFields& fields) = 0;

  void Debug(const std::string& message, const LogFields& fields = {}) {
    Write(LogLevel::kDebug, message, fields);
  }
  void Info(const std::string& message, const LogFields& fields = {}) {
    Write(LogLevel::kInfo, message, fields);
  }
  void Warning(const std::string& message, const LogFields& fields = {}) {
    Write(LogLevel::kWarning, message, fields);
  }
  void Error(const std::string& message, const LogFields& fields = {}) {
    Write(LogLevel::kError, message, fields);
  }
};

// journald when the process's stderr is connected to the journal, stderr otherwise.
// `verbose` enables debug entries.
std::unique_ptr<EventLog> MakeEventLog(bool verbose);

}  // namespace rollguard
