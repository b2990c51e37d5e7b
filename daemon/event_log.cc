#include "daemon/event_log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <cstdlib>

namespace rollguard {
namespace {

class StderrEventLog final : public EventLog {
 public:
  explicit StderrEventLog(bool verbose) : logger_(spdlog::stderr_color_mt("rollguard")) {
    logger_->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-7l%$ %v");
    logger_->set_level(verbose ? spdlog::level::debug : spdlog::level::info);
    logger_->flush_on(spdlog::level::debug);
  }
  ~StderrEventLog() override { spdlog::drop("rollguard"); }

  void Write(LogLevel level, const std::string& message, const LogFields& fields) override {
    std::string line = message;
    for (const auto& [key, value] : fields) {
      // ROLLGUARD_RULE=api -> rule=api: shorter in a terminal, same facts.
      std::string short_key = key.rfind("ROLLGUARD_", 0) == 0 ? key.substr(10) : key;
      for (char& c : short_key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      line += " " + short_key + "=" + value;
    }
    logger_->log(ToSpdlog(level), line);
  }

 private:
  static spdlog::level::level_enum ToSpdlog(LogLevel level) {
    switch (level) {
      case LogLevel::kDebug:
        return spdlog::level::debug;
      case LogLevel::kInfo:
        return spdlog::level::info;
      case LogLevel::kWarning:
        return spdlog::level::warn;
      case LogLevel::kError:
        return spdlog::level::err;
    }
    return spdlog::level::info;
  }

  std::shared_ptr<spdlog::logger> logger_;
};

class JournalEventLog final : public EventLog {
 public:
  explicit JournalEventLog(bool verbose) : verbose_(verbose) {}

  void Write(LogLevel level, const std::string& message, const LogFields& fields) override {
    if (level == LogLevel::kDebug && !verbose_) return;
    std::vector<std::string> items;
    items.reserve(fields.size() + 3);
    items.push_back("MESSAGE=" + message);
    items.push_back("PRIORITY=" + std::to_string(ToPriority(level)));
    items.push_back("SYSLOG_IDENTIFIER=rollguard");
    for (const auto& [key, value] : fields) items.push_back(key + "=" + value);
    std::vector<iovec> vectors;
    vectors.reserve(items.size());
    for (std::string& item : items) vectors.push_back({item.data(), item.size()});
    if (sd_journal_sendv(vectors.data(), static_cast<int>(vectors.size())) < 0) {
      std::fprintf(stderr, "%s\n", message.c_str());  // journald gone: keep the message
    }
  }

 private:
  static int ToPriority(LogLevel level) {
    switch (level) {
      case LogLevel::kDebug:
        return LOG_DEBUG;
      case LogLevel::kInfo:
        return LOG_INFO;
      case LogLevel::kWarning:
        return LOG_WARNING;
      case LogLevel::kError:
        return LOG_ERR;
    }
    return LOG_INFO;
  }

  bool verbose_;
};

// JOURNAL_STREAM holds "device:inode" of the journal stream systemd connected to our
// stderr; it only counts when stderr is still that stream (not redirected by a child).
bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  struct stat info {};
  if (fstat(2, &info) != 0) return false;
  unsigned long long device = 0;
  unsigned long long inode = 0;
  if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  return info.st_dev == device && info.st_ino == inode;
}

}  // namespace

std::unique_ptr<EventLog> MakeEventLog(bool verbose) {
  if (StderrIsJournal()) return std::make_unique<JournalEventLog>(verbose);
  return std::make_unique<StderrEventLog>(verbose);
}

}  // namespace rollguard
