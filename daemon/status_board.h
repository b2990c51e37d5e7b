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
// Threads: every observer call, SetPausedUntil(), Json(), MaybePublish() and HeldBytes()
// belong to the event loop. Published(), Want() and Request() may be called from any
// thread (the HTTP server's); Request() never from the loop's, which it may wait for.
//
// Publication on demand: the document is published for HTTP readers only while it is
// wanted. Nobody may read it for hours, and at 10,000 probes it is ~4.6 MB, rebuilt every
// second: the largest single item of the daemon's heap, and CPU spent for no one.
//   - A reader asks with Request() (or Want()): it sets a flag, and the loop's next
//     MaybePublish() makes the document wanted until kWantedFor after that call.
//   - While wanted, MaybePublish() refreshes it at most once per kPublishInterval after a
//     change of grade, breaker, action, pause or configuration, and at most once per
//     kReadingsInterval when only probe readings changed (in slices, see MaybePublish).
//   - Once kWantedFor passes without a request, MaybePublish() releases the published
//     document and any half-written one, and does no rendering for HTTP readers until the
//     next request. The entries keep tracking what observers report (a few fields each);
//     their offsets into the released document are forgotten, so the next publication
//     renders every entry anew.
//   - Request() returns the current publication at once. When there is none (before the
//     first, after a release) it marks the document wanted, wakes the loop through the
//     callback given to SetWake() (the runtime writes to an eventfd the loop watches) and
//     waits, bounded, for the publication to complete; concurrent requests wait for the
//     same one. A reader never sees a placeholder or a stale document from before a
//     release.
// All the HTTP threads touch is `requested_` (atomic) and `published_` (under
// `published_mutex_`, with `published_cv_` to wait on); everything else is the loop's.
// `rollguard status` (Json(), on the loop) renders afresh and is not affected.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
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
#include "common/shared_names.h"
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

  // How long the document stays wanted after the last request. Dashboards, scripts and
  // `watch` poll every few seconds, scrapers every 15 to 60: a minute serves all of them
  // at once from a current document, and a daemon nobody reads frees the document (and
  // stops rendering it) a minute after the last look. Shorter would make a once-a-minute
  // poller wait for a full publication (a few hundred milliseconds at 10,000 probes) on
  // every request.
  static constexpr Duration kWantedFor = std::chrono::seconds(60);

  // While the document is wanted (see the top of this file), publishes it when something
  // changed and the last publication is at least kPublishInterval (kReadingsInterval for
  // readings only) before `now`, and at once when there is no current publication. The
  // next document is written in order into one buffer: the head (breakers, configuration,
  // actions, pause) when the publication starts, then every entry, those that changed
  // rendered anew, the others copied from the last publication, in slices of at most
  // kRenderSlice renderings and about kCopySlice bytes, a slice per call at most every
  // kSliceSpacing; it is published when the last slice is done. At 10,000 probes,
  // rendering every new reading in one go stalled the loop for tens of milliseconds once a
  // second, and copying the whole document (megabytes) for several.
  // A change after the publication started (an entry after its slice, the head at all) goes
  // out in the next one. Returns when to call again: `now` while a publication is under way,
  // the end of the interval while a change waits for it, nullopt when nothing is pending.
  // Once kWantedFor has passed since the last request it releases the documents instead and
  // returns nullopt; the runtime calls it after every loop iteration (the sweep wakes the
  // loop every 100 ms), so the release comes on the first call after that moment.
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

  // The current publication: null before the first and after a release. Any thread;
  // never blocks on rendering, and does not make the document wanted.
  std::shared_ptr<const std::string> Published() const;

  // Makes the document wanted: the loop's next MaybePublish() counts kWantedFor from then.
  // Any thread; never blocks.
  void Want();

  // What an HTTP request for the document calls: Want(), then the current publication at
  // once if there is one; otherwise wakes the loop (SetWake) and waits up to `wait` for the
  // publication to complete. Null when none completed within `wait`. Any thread but the
  // loop's (which would wait for itself).
  std::shared_ptr<const std::string> Request(Duration wait);

  // The loop is stopping and will publish no more: Request() returns the current
  // publication or null at once, and requests waiting return. Any thread.
  void StopRequests();

  // How Request() wakes the loop when it has to wait. Set once, before any thread may
  // call Request(); called from those threads, so it must be thread-safe and must not block.
  void SetWake(std::function<void()> wake);

  // The bytes held for publication: the published document and the one being written
  // (capacity). 0 after a release. Loop thread only.
  size_t HeldBytes() const;

  // Distinct field names the probes' last reports hold, each once however many probes
  // report it. Loop thread only.
  size_t field_name_count() const { return field_names_.size(); }

 private:
  // Names, types, labels and the probes a rule reads are read from the configuration the
  // board holds (indexed_rules_, probe_configs_), not copied into every entry.
  struct RuleEntry {
    Grade grade = Grade::kExcellent;
    OptionalTime since;
    bool stale = true;
    std::string reason;
    std::optional<std::string> held_by;
    bool config_error = false;
    OptionalTime evaluated_at;
    // Where this entry's JSON is in the last publication (in the one being written once
    // its slice is done; length 0: never rendered, or its publication was released), and
    // whether it changed since. Only changed entries are rendered again: with thousands of
    // probes reporting, rendering them all 10 times a second was most of the daemon's CPU
    // and stalled the loop. Each entry kept its own copy of its rendering once, which held
    // the document twice over (~0.7 KB per probe and rule, bench/RESULTS.md).
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
    // Names held in field_names_: every http probe reports the same few, and a copy each
    // was ~0.15 KB per probe (bench/RESULTS.md).
    std::vector<std::pair<const std::string*, FieldValue>> fields;
  };
  struct ProbeEntry {
    const ProbeSpec* spec = nullptr;  // in probe_configs_
    std::optional<LastResult> last;
    OptionalTime reported_at;
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
  SharedNames field_names_;  // of every probes_[i].last
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

  // Drops the published document and any half-written one, and every entry's place in
  // them: the next publication renders every entry anew.
  void Release();
  // Stops the publication being written, if any, and frees its buffer.
  void AbandonPublication();

  bool publishing_ = false;  // a publication is being written, slice by slice
  std::string next_;         // the publication being written
  TimePoint last_slice_;
  size_t round_cursor_ = 0;        // its next step: probes first, then rules
  bool dirty_ = true;              // a change published within kPublishInterval
  bool readings_changed_ = false;  // a probe reported since the last publication
  std::optional<TimePoint> last_publish_;

  size_t last_size_ = 0;  // the last publication's size: the next one's reserve
  // Until when the document is wanted (nullopt: not wanted). Loop thread only.
  std::optional<TimePoint> wanted_until_;

  // Set by Want() and Request() on any thread, taken by MaybePublish() on the loop's.
  std::atomic<bool> requested_{false};
  std::function<void()> wake_;  // set before the HTTP threads start, then only called

  mutable std::mutex published_mutex_;
  std::condition_variable published_cv_;  // notified when a publication completes
  bool requests_stopped_ = false;         // under published_mutex_
  // Written by the loop thread only (under the mutex), so the loop reads it without one.
  // Null while there is no current publication (before the first, after a release).
  std::shared_ptr<const std::string> published_;
};

}  // namespace rollguard
