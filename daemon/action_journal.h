// ActionJournal: `state_dir/actions.jsonl`, the append-only record of every action
// decision (spec §5: "Every action decision ... is one JSON line in actions.jsonl").
//
// One JSON object per line. A decision is appended as phase "decided" before anything
// runs; an executed action gets a second line, phase "finished", with the same id and
// its result. Append() returns only once the line is on disk (fdatasync), so a record
// that Append() confirmed survives kill -9 and power loss.
//
// Torn writes: a crash in the middle of Append() can leave a partial last line. It was
// never confirmed, so it is dropped: ReadAll() skips it (and says so in its report), and
// Open() truncates it away before appending, so it never ends up in the middle of the
// file. A line in the middle that does not parse is corruption and an error.
//
// Fields, with exactly these names: time (ISO-8601), ts_ms, phase, id, rule, action,
// grade, previous_grade, decision, incident, reason, breaker, open_until (ISO-8601, only
// when set); for phase "finished" also result, exit_code or signal, duration_seconds,
// and error (only when set: why the command could not run).
//
// One writer per file; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"

namespace rollguard {

enum class JournalPhase { kDecided, kFinished };

// "decided" / "finished".
std::string_view PhaseName(JournalPhase phase);

struct JournalRecord {
  TimePoint time;  // written as "time" (ISO-8601) and "ts_ms"
  JournalPhase phase = JournalPhase::kDecided;
  std::string id;  // unique per decision; its "finished" record repeats it
  std::string rule;
  std::string action;
  std::string grade;           // the grade the rule entered
  std::string previous_grade;  // the grade it left
  // executed | dry_run | suppressed_breaker | suppressed_cooldown | suppressed_unarmed |
  // suppressed_paused | suppressed_dependency | suppressed_fleet (the ActionPlanner's
  // names; the journal stores them as given).
  std::string decision;
  std::string incident;                 // the incident id
  std::string reason;                   // one human sentence
  std::string breaker;                  // the breaker consulted ("default" = the unnamed one)
  std::optional<TimePoint> open_until;  // suppressed_breaker: when it may admit again
  std::string why;  // why it was decided so: "breaker open until ...", "claimed by vm-3 (ok)"
  // Fleet actions (docs/fleet.md): the incident as the fleet names it, and the daemon
  // that holds its claim (this one when executed here).
  std::string fleet_incident;
  std::string fleet_holder;

  // Phase kFinished only.
  std::string result;                      // ok | failed | timeout
  std::optional<int> exit_code;            // the command exited with this code
  std::optional<int> signal;               // the command was killed by this signal
  std::optional<double> duration_seconds;  // from start to exit
  std::string error;                       // e.g. "cannot execute /x: No such file..."

  bool operator==(const JournalRecord&) const = default;
};

// One line of actions.jsonl, without the newline; and back. Parsing requires ts_ms,
// phase and id, reads absent strings as empty, and ignores unknown keys.
std::string FormatJournalLine(const JournalRecord& record);
Result<JournalRecord> ParseJournalLine(std::string_view line);

// What ReadAll() skipped.
struct JournalReadReport {
  bool torn_tail = false;  // the last line was partial or unparsable and was skipped
  int torn_line = 0;       // its 1-based line number
  std::string torn_error;  // why it did not parse
};

class ActionJournal {
 public:
  // Opens (creating, mode 0640) `path` for appending, O_APPEND | O_CLOEXEC, and drops a
  // torn last line left by a crash (see torn_bytes_dropped()). Errors name the file.
  static Result<ActionJournal> Open(const std::string& path);

  ActionJournal(ActionJournal&& other) noexcept;
  ActionJournal& operator=(ActionJournal&& other) noexcept;
  ActionJournal(const ActionJournal&) = delete;
  ActionJournal& operator=(const ActionJournal&) = delete;
  ~ActionJournal();

  // Appends one line and fdatasyncs it. On error nothing was confirmed, and a partial
  // write is rolled back when possible; the error names the file.
  Status Append(const JournalRecord& record);

  // A fresh id for a decision at `now`: "<ts_ms>-<6 hex digits>". The digits count up from
  // a random start, so ids never repeat within a run and are unlikely to across runs.
  std::string NewId(TimePoint now);

  // Bytes of a torn last line that Open() removed (0 normally); the caller logs it.
  uint64_t torn_bytes_dropped() const { return torn_bytes_dropped_; }
  const std::string& path() const { return path_; }

  // Reads every record of the journal at `path`. A missing file has no records. A torn
  // last line is skipped and described in `*report` (when given). Any other line that
  // does not parse is an error "path:line: why".
  static Result<std::vector<JournalRecord>> ReadAll(const std::string& path,
                                                    JournalReadReport* report = nullptr);

 private:
  ActionJournal(std::string path, int fd, uint64_t torn_bytes_dropped);

  std::string path_;
  int fd_ = -1;
  uint64_t torn_bytes_dropped_ = 0;
  uint32_t next_id_ = 0;
};

}  // namespace rollguard
