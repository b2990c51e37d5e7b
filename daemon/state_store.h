// StateStore: what rollguard remembers across restarts and crashes, as one JSON document
// `state.json` in `state_dir` (spec §2, §5: "a restart never resets a breaker").
//
// Crash safety: Save() writes `state.json.tmp`, fsyncs it, renames it over `state.json`
// and fsyncs the directory, so after a kill -9 or a power cut at any point `state.json`
// is either the previous document or the new one, never a mix. A `state.json.tmp` left
// by a crash is ignored by Load() and overwritten by the next Save().
//
// A `state.json` that does not parse is never silently replaced by an empty state: Load()
// moves it aside as `state.json.corrupt-<ms>` (kept for the admin) and returns an error
// naming both files. The caller decides whether to start; a start after that sees no
// `state.json` and begins empty, with the action journal (actions.jsonl) as the record
// of what breakers admitted.
//
// One process owns a state_dir; StateStore takes no lock. Not thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "daemon/breaker.h"

namespace rollguard {

// A rule's grade as last evaluated, by grade name ("excellent" ... "failure").
struct PersistedRule {
  std::string grade;
  TimePoint since;  // when the rule entered `grade`

  bool operator==(const PersistedRule&) const = default;
};

// An incident: a rule at a grade that names actions, from entering it until it recovers.
struct IncidentState {
  std::string id;
  std::string grade;
  TimePoint opened;
  bool acted = false;                    // an action was executed for it: never re-run
  std::vector<std::string> actions_run;  // action names, in order

  bool operator==(const IncidentState&) const = default;
};

// The latest `rollguard deployed` for a service.
struct DeployRecord {
  std::string version;  // may be empty
  TimePoint time;

  bool operator==(const DeployRecord&) const = default;
};

// The latest deploy that arms the actions of a rule whose `service` label is `service`: a
// deploy of that service or one recorded without a service (a whole-host deploy); any
// deploy when `service` is "". nullptr when there is none. `deploys` is keyed by service.
const DeployRecord* LatestDeployFor(const std::map<std::string, DeployRecord>& deploys,
                                    const std::string& service);

// An executed action with `verify` whose verdict is still to come (docs/actions.md): a
// restart checks it at the same wall-clock time it would have, and escalates the same way.
struct PersistedVerify {
  std::string rule;
  std::string action;
  std::string incident;
  std::string grade;           // the grade the rule had entered when the action ran
  std::string previous_grade;  // the one it left
  std::string reason;
  std::string service;
  std::string summary;
  std::string escalate;  // the action decided when the verify fails ("" = none)
  Duration verify{0};
  TimePoint finished;     // when the action finished: the verdict is due at finished + verify
  TimePoint detected_at;  // when the triggering condition first held

  bool operator==(const PersistedVerify&) const = default;
};

// The whole persisted document. Every field is keyed by a config name; entries for names
// that a reloaded config no longer has are the caller's to drop.
struct PersistedState {
  std::map<std::string, BreakerState> breakers;    // "" = the default breaker
  std::map<std::string, TimePoint> last_runs;      // action name -> last executed
  std::map<std::string, PersistedRule> rules;      // rule name -> grade
  std::map<std::string, IncidentState> incidents;  // rule name -> its open incident
  std::optional<TimePoint> paused_until;           // `rollguard pause`
  std::map<std::string, DeployRecord> deploys;     // service ("" = none given) -> latest
  std::vector<PersistedVerify> verifies;           // pending, by due time
  // How many actions.jsonl records this document accounts for. Records past it were
  // journaled but not yet reflected here (a crash in between) and are replayed on start.
  uint64_t journal_records = 0;

  bool operator==(const PersistedState&) const = default;
};

// The JSON form of state.json (times as integer milliseconds since the epoch), with a
// "format" version. Parsing ignores unknown keys and defaults missing ones, so older and
// newer daemons can read each other's files; a newer "format" is an error.
std::string SerializeState(const PersistedState& state);
Result<PersistedState> ParseState(std::string_view json);

class StateStore {
 public:
  // Opens `dir`, creating it with mode 0750 when it does not exist (its parent must).
  // Errors name the directory and say why. `clock` (which must outlive the store) only
  // names corrupt files; the default is the system clock.
  static Result<StateStore> Open(const std::string& dir);
  static Result<StateStore> Open(const std::string& dir, const Clock& clock);

  StateStore(StateStore&& other) noexcept;
  StateStore& operator=(StateStore&& other) noexcept;
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;
  ~StateStore();

  // Reads state.json. Missing file: an empty PersistedState. Unreadable: an error naming
  // the file. Unparsable: the file is moved aside (see above) and an error names it.
  Result<PersistedState> Load();

  // Replaces state.json atomically and durably (see above). On error state.json is
  // untouched.
  Status Save(const PersistedState& state);

  const std::string& dir() const { return dir_; }
  std::string StatePath() const;  // dir/state.json

 private:
  StateStore(std::string dir, int dir_fd, const Clock* clock);

  std::string dir_;
  int dir_fd_ = -1;  // O_DIRECTORY; files are opened relative to it
  const Clock* clock_ = nullptr;
};

}  // namespace rollguard
