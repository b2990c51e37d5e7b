#include "daemon/action_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "common/strings.h"

namespace rollguard {
namespace {

using Json = nlohmann::ordered_json;

std::string ErrnoText(int error) { return std::strerror(error); }

// The inverse of FormatIso8601 for exactly the form it writes.
std::optional<TimePoint> ParseIso8601(const std::string& text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
  char zone = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c%n", &year, &month, &day, &hour,
                  &minute, &second, &millis, &zone, &consumed) != 8 ||
      zone != 'Z' || static_cast<size_t>(consumed) != text.size()) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t seconds = timegm(&tm);
  return FromMillis(static_cast<int64_t>(seconds) * 1000 + millis);
}

std::string OptionalString(const Json& object, const char* key, std::string* error) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  if (!it->is_string()) {
    *error = std::string(key) + ": expected a string";
    return "";
  }
  return it->get<std::string>();
}

std::optional<int> OptionalInt(const Json& object, const char* key, std::string* error) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) {
    *error = std::string(key) + ": expected an integer";
    return std::nullopt;
  }
  return it->get<int>();
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoText(errno));
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return {};
}

Result<std::string> PreadExactly(int fd, uint64_t offset, uint64_t length) {
  std::string data(length, '\0');
  uint64_t done = 0;
  while (done < length) {
    const ssize_t got =
        ::pread(fd, data.data() + done, length - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoText(errno));
    }
    if (got == 0) return Fail("file shrank while reading");
    done += static_cast<uint64_t>(got);
  }
  return data;
}

bool IsBlank(std::string_view line) { return Trim(line).empty(); }

// Where a torn last line starts, if the file of `size` bytes behind `fd` ends in one: a
// last line without its newline, or one that does not parse (a crash can leave zeros).
Result<std::optional<uint64_t>> FindTornTail(int fd, uint64_t size) {
  if (size == 0) return std::optional<uint64_t>{};
  // Read backwards in growing chunks until the chunk holds the whole last line.
  for (uint64_t chunk = 64 * 1024;; chunk *= 2) {
    const uint64_t start = size > chunk ? size - chunk : 0;
    Result<std::string> tail = PreadExactly(fd, start, size - start);
    if (!tail) return Fail(tail.error().message);
    const std::string& text = *tail;
    const bool terminated = text.back() == '\n';
    const size_t body_end = terminated ? text.size() - 1 : text.size();
    const size_t newline = body_end == 0 ? std::string::npos : text.rfind('\n', body_end - 1);
    if (newline == std::string::npos && start > 0) continue;
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    const std::string_view line = std::string_view(text).substr(line_start, body_end - line_start);
    if (terminated && (IsBlank(line) || ParseJournalLine(line).ok())) {
      return std::optional<uint64_t>{};
    }
    return std::optional<uint64_t>{start + line_start};
  }
}

}  // namespace

std::string_view PhaseName(JournalPhase phase) {
  switch (phase) {
    case JournalPhase::kDecided:
      return "decided";
    case JournalPhase::kFinished:
      return "finished";
  }
  return "decided";
}

std::string FormatJournalLine(const JournalRecord& record) {
  Json line = Json::object();
  line["time"] = FormatIso8601(record.time);
  line["ts_ms"] = ToMillis(record.time);
  line["phase"] = PhaseName(record.phase);
  line["id"] = record.id;
  line["rule"] = record.rule;
  line["action"] = record.action;
  line["grade"] = record.grade;
  line["previous_grade"] = record.previous_grade;
  line["decision"] = record.decision;
  line["incident"] = record.incident;
  line["reason"] = record.reason;
  line["breaker"] = record.breaker;
  if (!record.why.empty()) line["why"] = record.why;
  if (!record.fleet_incident.empty()) line["fleet_incident"] = record.fleet_incident;
  if (!record.fleet_holder.empty()) line["fleet_holder"] = record.fleet_holder;
  if (record.open_until) line["open_until"] = FormatIso8601(*record.open_until);
  if (record.phase == JournalPhase::kFinished) {
    line["result"] = record.result;
    if (record.exit_code) line["exit_code"] = *record.exit_code;
    if (record.signal) line["signal"] = *record.signal;
    if (record.duration_seconds) line["duration_seconds"] = *record.duration_seconds;
    if (!record.error.empty()) line["error"] = record.error;
  }
  // Reasons and errors may carry command output; invalid UTF-8 is replaced, not thrown on.
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<JournalRecord> ParseJournalLine(std::string_view text) {
  Json line = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (line.is_discarded()) return Fail("not valid JSON");
  if (!line.is_object()) return Fail("not a JSON object");
  JournalRecord record;
  auto ts = line.find("ts_ms");
  if (ts == line.end() || !ts->is_number_integer()) return Fail("ts_ms: expected an integer");
  record.time = FromMillis(ts->get<int64_t>());
  std::string error;
  const std::string phase = OptionalString(line, "phase", &error);
  if (phase == "decided") {
    record.phase = JournalPhase::kDecided;
  } else if (phase == "finished") {
    record.phase = JournalPhase::kFinished;
  } else {
    return Fail("phase: expected \"decided\" or \"finished\"");
  }
  record.id = OptionalString(line, "id", &error);
  if (record.id.empty()) return Fail("id: expected a non-empty string");
  record.rule = OptionalString(line, "rule", &error);
  record.action = OptionalString(line, "action", &error);
  record.grade = OptionalString(line, "grade", &error);
  record.previous_grade = OptionalString(line, "previous_grade", &error);
  record.decision = OptionalString(line, "decision", &error);
  record.incident = OptionalString(line, "incident", &error);
  record.reason = OptionalString(line, "reason", &error);
  record.breaker = OptionalString(line, "breaker", &error);
  record.why = OptionalString(line, "why", &error);
  record.fleet_incident = OptionalString(line, "fleet_incident", &error);
  record.fleet_holder = OptionalString(line, "fleet_holder", &error);
  const std::string open_until = OptionalString(line, "open_until", &error);
  if (!open_until.empty()) {
    record.open_until = ParseIso8601(open_until);
    if (!record.open_until) return Fail("open_until: expected an ISO-8601 time");
  }
  record.result = OptionalString(line, "result", &error);
  record.exit_code = OptionalInt(line, "exit_code", &error);
  record.signal = OptionalInt(line, "signal", &error);
  record.error = OptionalString(line, "error", &error);
  auto duration = line.find("duration_seconds");
  if (duration != line.end() && !duration->is_null()) {
    if (!duration->is_number()) return Fail("duration_seconds: expected a number");
    record.duration_seconds = duration->get<double>();
  }
  if (!error.empty()) return Fail(error);
  return record;
}

Result<ActionJournal> ActionJournal::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Fail("cannot open action journal " + path + ": " + ErrnoText(errno));
  auto fail = [&](const std::string& why) -> Error {
    ::close(fd);
    return Fail("cannot open action journal " + path + ": " + why);
  };
  struct stat info {};
  if (::fstat(fd, &info) != 0) return fail(ErrnoText(errno));
  const uint64_t size = static_cast<uint64_t>(info.st_size);

  // Reading needs its own descriptor: this one is write-only.
  const int reader = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (reader < 0) return fail(ErrnoText(errno));
  Result<std::optional<uint64_t>> torn = FindTornTail(reader, size);
  ::close(reader);
  if (!torn) return fail(torn.error().message);

  uint64_t dropped = 0;
  if (torn->has_value()) {
    // Appending after it would bury it mid-file, where it would read as corruption.
    if (::ftruncate(fd, static_cast<off_t>(**torn)) != 0 || ::fdatasync(fd) != 0) {
      return fail("cannot drop the torn last line: " + ErrnoText(errno));
    }
    dropped = size - **torn;
  }
  return ActionJournal(path, fd, dropped);
}

ActionJournal::ActionJournal(std::string path, int fd, uint64_t torn_bytes_dropped)
    : path_(std::move(path)),
      fd_(fd),
      torn_bytes_dropped_(torn_bytes_dropped),
      next_id_(std::random_device{}()) {}

ActionJournal::ActionJournal(ActionJournal&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      torn_bytes_dropped_(other.torn_bytes_dropped_),
      next_id_(other.next_id_) {}

ActionJournal& ActionJournal::operator=(ActionJournal&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    torn_bytes_dropped_ = other.torn_bytes_dropped_;
    next_id_ = other.next_id_;
  }
  return *this;
}

ActionJournal::~ActionJournal() {
  if (fd_ >= 0) ::close(fd_);
}

Status ActionJournal::Append(const JournalRecord& record) {
  const std::string line = FormatJournalLine(record) + "\n";
  struct stat info {};
  const bool know_size = ::fstat(fd_, &info) == 0;
  if (Status written = WriteAll(fd_, line); !written) {
    // A partial line would read as corruption once the next record follows it.
    std::string also;
    if (know_size && ::ftruncate(fd_, info.st_size) != 0) {
      // The partial line stays; the next start drops it as a torn last line.
      also = " (and cannot cut the partial line: " + ErrnoText(errno) + ")";
    }
    return Fail("cannot append to " + path_ + ": " + written.error().message + also);
  }
  if (::fdatasync(fd_) != 0) return Fail("cannot sync " + path_ + ": " + ErrnoText(errno));
  return {};
}

std::string ActionJournal::NewId(TimePoint now) {
  // A random start then a counter: distinct within this process, unlikely to meet the
  // ids of an earlier run in the same millisecond.
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(next_id_++ & 0xffffff));
  return std::to_string(ToMillis(now)) + "-" + suffix;
}

Result<std::vector<JournalRecord>> ActionJournal::ReadAll(const std::string& path,
                                                          JournalReadReport* report) {
  if (report != nullptr) *report = JournalReadReport{};
  std::string contents;
  std::string error;
  if (!ReadWholeFile(path, &contents, &error)) {
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) {
      return std::vector<JournalRecord>{};
    }
    return Fail("cannot read action journal " + path + ": " + error);
  }

  // Split into lines; the last piece lacks its newline when a write was torn.
  std::vector<std::string_view> lines;
  std::string_view rest = contents;
  while (!rest.empty()) {
    const size_t newline = rest.find('\n');
    if (newline == std::string_view::npos) {
      lines.push_back(rest);
      break;
    }
    lines.push_back(rest.substr(0, newline));
    rest.remove_prefix(newline + 1);
  }
  const bool terminated = contents.empty() || contents.back() == '\n';
  size_t last = lines.size();
  while (last > 0 && IsBlank(lines[last - 1])) --last;

  std::vector<JournalRecord> records;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (IsBlank(lines[i])) continue;
    const bool is_last = i + 1 == last;
    Result<JournalRecord> record = ParseJournalLine(lines[i]);
    if (is_last && (!record.ok() || (!terminated && i + 1 == lines.size()))) {
      if (report != nullptr) {
        report->torn_tail = true;
        report->torn_line = static_cast<int>(i + 1);
        report->torn_error = record.ok() ? "no newline at the end" : record.error().message;
      }
      break;
    }
    if (!record.ok()) {
      return Fail(path + ":" + std::to_string(i + 1) + ": " + record.error().message);
    }
    records.push_back(std::move(record).value());
  }
  return records;
}

}  // namespace rollguard
