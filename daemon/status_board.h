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
#include <unordered_map>
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

  // The whole document, rendered now. Loop thread only.
  std::string Json() const;

  // True when something changed since the last publication.
  bool dirty() const { return dirty_ || readings_changed_; }

  // Publishes the document when something changed and the last publication is at least
  // kPublishInterval (kReadingsInterval for readings only) before `now`. The entries that
  // changed are rendered kRenderSlice at a time, a slice per call at most every
  // kSliceSpacing, and the document is published when the last slice is done: at 10,000 probes,
  // rendering every new reading in one go stalled the loop for tens of milliseconds once a second.
  // An entry that changes again after its slice goes out as it was rendered, and again in the next
  // publication. Returns when to call again: `now` while a publication is under way, the end of the
  // interval while a change waits for it, nullopt when nothing is pending. Loop thread only.
  std::optional<TimePoint> MaybePublish(TimePoint now);

  // Entries rendered per slice (about half a millisecond of work), and the time from one
  // slice to the next. The loop dispatches one event source per iteration, so a slice
  // after every iteration would let one probe answer through per slice: spaced out, the
  // loop serves everything that arrives in between at full speed.
  static constexpr size_t kRenderSlice = 128;
  static constexpr Duration kSliceSpacing = std::chrono::milliseconds(1);

  // The last published document ("{}" before the first). Any thread; never blocks on
  // rendering.
  std::shared_ptr<const std::string> Published() const;

 private:
  struct RuleEntry {
    std::string name;
    Grade grade = Grade::kExcellent;
    std::optional<TimePoint> since;
    bool stale = true;
    std::string reason;
    std::optional<std::string> held_by;
    bool config_error = false;
    std::optional<TimePoint> evaluated_at;
    std::map<std::string, std::string> labels;
    std::vector<std::string> probes;
    // This entry's JSON as last rendered, and whether it changed since. Only changed
    // entries are rendered again: with thousands of probes reporting, rendering them all
    // 10 times a second was most of the daemon's CPU and stalled the loop
    // (bench/RESULTS.md).
    mutable std::string rendered;
    mutable bool changed = true;
  };
  struct ProbeEntry {
    std::string name;
    std::string type;
    std::map<std::string, std::string> labels;
    std::optional<ProbeResult> last;
    std::optional<TimePoint> reported_at;
    mutable std::string rendered;  // as RuleEntry::rendered
    mutable bool changed = true;
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
  std::map<std::string, size_t, std::less<>> rule_index_;
  // The RuleSet of the configuration applied (held, so its address names no other
  // RuleSet): its evaluations find their entry by index, not by name.
  std::shared_ptr<const RuleSet> indexed_rules_;
  std::vector<ProbeEntry> probes_;
  std::map<std::string, size_t, std::less<>> probe_index_;
  // The configured probes (held, so their addresses name no other spec) by the address
  // of their spec: a result finds its entry without comparing names.
  std::vector<std::shared_ptr<const ProbeConfig>> probe_configs_;
  std::unordered_map<const ProbeSpec*, size_t> probe_by_spec_;
  std::vector<BreakerReport> breakers_;
  std::deque<ActionEntry> actions_;  // newest first

  // Renders up to `budget` changed entries from `cursor` on (probes first, then rules)
  // and moves it past them; true once the cursor has passed the last entry.
  bool RenderChanged(size_t& cursor, size_t budget) const;
  // The document from the entries' renderings (entries never rendered are rendered now).
  std::string Assemble() const;
  static std::string RenderProbe(const ProbeEntry& probe);
  static std::string RenderRule(const RuleEntry& rule);

  bool publishing_ = false;  // a publication is being rendered, slice by slice
  TimePoint last_slice_;
  size_t round_cursor_ = 0;        // its next entry: probes first, then rules
  bool dirty_ = true;              // a change published within kPublishInterval
  bool readings_changed_ = false;  // a probe reported since the last publication
  std::optional<TimePoint> last_publish_;

  mutable std::mutex published_mutex_;
  std::shared_ptr<const std::string> published_;
};

}  // namespace rollguard
