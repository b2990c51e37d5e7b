// StatusBoard: the document behind `GET /api/v1/status` and `rollguard status`.
//
// An observer that keeps, from what the runtime reports, the current state of every
// rule, probe and breaker, the last action decisions, the maintenance pause and the
// configuration. It never asks the runtime anything: what it shows is what it was told.
//
// The document (JSON, see docs/metrics.md for the fields):
//   {"version", "config": {path, last_reload_ok, last_reload_time, last_reload_error},
//    "paused_until", "rules": [...], "probes": [...], "breakers": [...],
//    "last_actions": [...]}   (last_actions newest first, at most `max_actions`)
// Times are ISO-8601 (FormatIso8601), absent times are null. Secrets never appear: probe
// fields and errors are secret-free by contract (common/probe_result.h), and neither
// probe URLs nor DSNs are shown.
//
// Threads: every observer call, SetPausedUntil(), Json() and MaybePublish() belong to the
// event loop. Published() may be called from any thread (the HTTP server's): it returns
// the document as last published, which MaybePublish() refreshes at most once per
// `kPublishInterval` after a change of grade, breaker, action, pause or configuration,
// and at most once per `kReadingsInterval` when only probe readings changed.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/probe_result.h"
#include "common/time.h"
#include "daemon/observer.h"

namespace rollguard {

class StatusBoard final : public RuntimeObserver {
 public:
  static constexpr Duration kPublishInterval = std::chrono::milliseconds(100);
  // Probes report many times a second when they run at short intervals, and re-rendering
  // each one's reading ten times a second was a tenth of the daemon's CPU at 2,500 runs/s
  // (bench/RESULTS.md). Readings alone (latency, fields) are refreshed once a second;
  // anything an operator acts on still goes out within kPublishInterval.
  static constexpr Duration kReadingsInterval = std::chrono::seconds(1);
  static constexpr size_t kDefaultMaxActions = 50;

  explicit StatusBoard(size_t max_actions = kDefaultMaxActions);

  void OnConfigApplied(const Config& config, TimePoint now) override;
  void OnReloadFailed(const std::string& error, TimePoint now) override;
  void OnProbeResult(const ProbeSpec& probe, const ProbeResult& result, TimePoint now) override;
  void OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                       TimePoint now) override;
  void OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                       TimePoint detected_at) override;
  void OnActionFinished(const JournalRecord& record) override;
  void OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now) override;

  // The maintenance pause (`rollguard pause`): nullopt when not paused.
  void SetPausedUntil(std::optional<TimePoint> until);

  // The whole document, rendered now (entries that did not change since the last
  // publication are copied from it). Changes nothing. Loop thread only.
  std::string Json() const;

  // True when something changed since the last publication.
  bool dirty() const { return dirty_ || readings_changed_; }

  // Publishes the document when something changed and the last publication is at least
  // kPublishInterval (kReadingsInterval for readings only) before `now`. The next document is
  // written in order into one buffer: the head (breakers, configuration, actions, pause) when
  // the publication starts, then every entry, those that changed rendered anew, the others
  // copied from the last publication, in slices of at most kRenderSlice renderings and
  // about kCopySlice bytes, a slice per call at most every kSliceSpacing; it is published
  // when the last slice is done. At 10,000 probes, rendering every new reading in one go
  // stalled the loop for tens of milliseconds once a second, and copying the whole
  // document (megabytes) for several.
  // A change after the publication started (an entry after its slice, the head at all) goes
  // out in the next one. Returns when to call again: `now` while a publication is under way,
  // the end of the interval while a change waits for it, nullopt when nothing is pending.
  // Loop thread only.
  std::optional<TimePoint> MaybePublish(TimePoint now);

  // Entries rendered per slice (about half a millisecond of work), bytes written per
  // slice (a fraction of a millisecond), and the time from one slice to the next. The
  // loop dispatches one event source per iteration, so a slice after every iteration
  // would let one probe answer through per slice: spaced out, the loop serves everything
  // that arrives in between at full speed.
  static constexpr size_t kRenderSlice = 128;
  static constexpr size_t kCopySlice = size_t{1} << 20;
  static constexpr Duration kSliceSpacing = std::chrono::milliseconds(1);

  // The last published document ("{}" before the first). Any thread; never blocks on
  // rendering.
  std::shared_ptr<const std::string> Published() const;

 private:
  // Names, types, labels and the probes a rule reads are read from the configuration the
  // board holds (indexed_rules_, probe_configs_), not copied into every entry.
  struct RuleEntry {
    Grade grade = Grade::kExcellent;
    std::optional<TimePoint> since;
    bool stale = true;
    std::string reason;
    std::optional<std::string> held_by;
    bool config_error = false;
    std::optional<TimePoint> evaluated_at;
    // Where this entry's JSON is in the last publication (in the one being written once
    // its slice is done; length 0: never rendered), and whether it changed since. Only
    // changed entries are rendered again: with thousands of probes reporting, rendering
    // them all 10 times a second was most of the daemon's CPU and stalled the loop. Each
    // entry kept its own copy of its rendering once, which held the document twice over
    // (~0.7 KB per probe and rule, bench/RESULTS.md).
    size_t offset = 0;
    size_t length = 0;
    bool changed = true;
  };
  // A probe's last result as the board keeps it: its fields in a vector, in the result's
  // (sorted) order. A map node per field was ~110 bytes of heap, ~0.4 KB per probe.
  struct LastResult {
    bool up = false;
    bool config_error = false;
    double latency_seconds = 0;
    std::string error;
    std::vector<std::pair<std::string, FieldValue>> fields;
  };
  struct ProbeEntry {
    const ProbeSpec* spec = nullptr;  // in probe_configs_
    std::optional<LastResult> last;
    std::optional<TimePoint> reported_at;
    size_t offset = 0;  // as in RuleEntry
    size_t length = 0;
    bool changed = true;
  };
  struct ActionEntry {
    JournalRecord decided;
    std::optional<JournalRecord> finished;
  };

  size_t max_actions_;
  std::string config_path_;
  bool last_reload_ok_ = true;
  std::optional<TimePoint> last_reload_time_;
  std::string last_reload_error_;
  std::optional<TimePoint> paused_until_;
  std::vector<RuleEntry> rules_;  // in the order of indexed_rules_
  // The RuleSet of the configuration applied (held, so its address names no other
  // RuleSet): its evaluations find their entry by index, not by name, and an entry's
  // index is the rule's (RuleSet::Find gives it by name).
  std::shared_ptr<const RuleSet> indexed_rules_;
  std::vector<ProbeEntry> probes_;
  // By name, viewing the names in probe_configs_.
  std::map<std::string_view, size_t, std::less<>> probe_index_;
  // The configured probes (held, so their addresses name no other spec) by the address
  // of their spec: a result finds its entry without comparing names.
  std::vector<std::shared_ptr<const ProbeConfig>> probe_configs_;
  std::unordered_map<const ProbeSpec*, size_t> probe_by_spec_;
  std::vector<BreakerReport> breakers_;
  std::deque<ActionEntry> actions_;  // newest first

  // The document up to the probes' opening bracket, and after the rules' closing one.
  std::string Head() const;
  static std::string Tail();
  // Appends the entries from step `cursor` on to `out` (steps: every probe, the bracket
  // between probes and rules, every rule), rendering those that changed or were never
  // rendered, until `render_budget` of them were rendered or `byte_budget` bytes appended;
  // moves the cursor past what it appended and returns true once it has passed the last
  // step. Calls appended(step, offset, length) for each entry it appended.
  template <typename Appended>
  bool AppendEntries(std::string& out, size_t& cursor, size_t render_budget, size_t byte_budget,
                     const Appended& appended) const;
  // An entry's rendering as it stands: its bytes in the last publication, or in the
  // publication being written for the steps before round_cursor_. Empty when it has none.
  template <typename Entry>
  std::string_view Stored(const Entry& entry, size_t step) const;
  static std::string RenderProbe(const ProbeEntry& probe);
  std::string RenderRule(size_t index) const;

  bool publishing_ = false;  // a publication is being written, slice by slice
  std::string next_;         // the publication being written
  TimePoint last_slice_;
  size_t round_cursor_ = 0;        // its next step: probes first, then rules
  bool dirty_ = true;              // a change published within kPublishInterval
  bool readings_changed_ = false;  // a probe reported since the last publication
  std::optional<TimePoint> last_publish_;

  mutable std::mutex published_mutex_;
  // Written by the loop thread only (under the mutex), so the loop reads it without one.
  std::shared_ptr<const std::string> published_;
};

}  // namespace rollguard
