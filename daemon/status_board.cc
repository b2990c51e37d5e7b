#include "daemon/status_board.h"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>

namespace rollguard {
namespace {

using nlohmann::json;

// `t`: a std::optional<TimePoint> or an OptionalTime.
template <typename MaybeTime>
json TimeOrNull(const MaybeTime& t) {
  return t ? json(FormatIso8601(*t)) : json(nullptr);
}

// When rule `index` entered its grade; none while the rule set has not recorded it
// (grade_since is TimePoint{} then).
OptionalTime GradeSince(const RuleSet& rules, size_t index) {
  OptionalTime since;
  if (rules.grade_since(index) != TimePoint{}) since = rules.grade_since(index);
  return since;
}

json FieldJson(const FieldValue& value) {
  if (const double* number = std::get_if<double>(&value)) return json(*number);  // NaN -> null
  return json(std::get<std::string>(value));
}

bool SameBreakers(const std::vector<BreakerReport>& a, const std::vector<BreakerReport>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].open != b[i].open ||
        a[i].admitted_in_window != b[i].admitted_in_window ||
        a[i].max_actions != b[i].max_actions || a[i].open_until != b[i].open_until ||
        a[i].redis_reachable != b[i].redis_reachable || a[i].claims != b[i].claims) {
      return false;
    }
  }
  return true;
}

// Copies a probe's new result over its previous one. A probe reports the same fields run
// after run, so they are assigned in place (no name changes hands, nothing is allocated);
// a result with other fields replaces them, sized exactly, their names held in `names`.
template <typename Last>
void ReleaseNames(Last& last, SharedNames& names) {
  for (const auto& field : last.fields) names.Release(field.first);
  last.fields.clear();
}

template <typename Last>
void AssignResult(Last& to, const ProbeResult& from, SharedNames& names) {
  to.up = from.up;
  to.latency_seconds = from.latency_seconds;
  to.error = from.error;
  to.config_error = from.config_error;
  if (to.fields.size() == from.fields.size() &&
      std::equal(to.fields.begin(), to.fields.end(), from.fields.begin(),
                 [](const auto& a, const auto& b) { return *a.first == b.first; })) {
    auto source = from.fields.begin();
    for (auto& field : to.fields) {
      field.second = source->second;
      ++source;
    }
    return;
  }
  decltype(to.fields) fields;
  fields.reserve(from.fields.size());
  for (const auto& [name, value] : from.fields) fields.emplace_back(names.Acquire(name), value);
  ReleaseNames(to, names);
  to.fields = std::move(fields);
}

json ActionJson(const JournalRecord& decided, const std::optional<JournalRecord>& finished) {
  json entry = {
      {"id", decided.id},
      {"time", FormatIso8601(decided.time)},
      {"rule", decided.rule},
      {"action", decided.action},
      {"grade", decided.grade},
      {"previous_grade", decided.previous_grade},
      {"decision", decided.decision},
      {"incident", decided.incident},
      {"reason", decided.reason},
      {"breaker", decided.breaker},
      {"open_until", TimeOrNull(decided.open_until)},
      {"why", decided.why},
      // Executed actions: null while running, then ok | failed | timeout.
      {"result", nullptr},
      {"finished_at", nullptr},
      {"exit_code", nullptr},
      {"signal", nullptr},
      {"duration_seconds", nullptr},
      {"error", nullptr},
  };
  if (finished) {
    entry["result"] = finished->result;
    entry["finished_at"] = FormatIso8601(finished->time);
    if (finished->exit_code) entry["exit_code"] = *finished->exit_code;
    if (finished->signal) entry["signal"] = *finished->signal;
    if (finished->duration_seconds) entry["duration_seconds"] = *finished->duration_seconds;
    if (!finished->error.empty()) entry["error"] = finished->error;
  }
  if (!decided.fleet_incident.empty()) {
    entry["fleet_incident"] = decided.fleet_incident;
    entry["fleet_holder"] = decided.fleet_holder;
  }
  return entry;
}

}  // namespace

StatusBoard::StatusBoard(size_t max_actions) : max_actions_(max_actions) {}

void StatusBoard::OnConfigApplied(const Config& config, TimePoint now) {
  config_path_ = config.path;
  // The first application is the start, not a reload; it still says when the running
  // configuration took effect.
  last_reload_ok_ = true;
  last_reload_time_ = now;
  last_reload_error_.clear();

  std::vector<RuleEntry> rules;
  const RuleSet& rule_set = *config.rules;
  rules.reserve(rule_set.size());  // exact: grown by doubling, up to half would sit unused
  for (size_t i = 0; i < rule_set.size(); ++i) {
    RuleEntry entry;
    entry.grade = rule_set.grade(i);
    entry.since = GradeSince(rule_set, i);
    entry.stale = rule_set.stale(i);
    entry.reason = rule_set.reason(i);
    // A surviving rule keeps what its last evaluation said until it is evaluated again.
    const std::optional<size_t> old_index =
        indexed_rules_ ? indexed_rules_->Find(rule_set.definition(i).name) : std::nullopt;
    if (old_index && *old_index < rules_.size()) {
      const RuleEntry& old = rules_[*old_index];
      entry.held_by = old.held_by;
      entry.config_error = old.config_error;
      entry.evaluated_at = old.evaluated_at;
      if (entry.reason.empty()) entry.reason = old.reason;
    }
    rules.push_back(std::move(entry));
  }
  rules_ = std::move(rules);
  indexed_rules_ = config.rules;

  std::vector<ProbeEntry> probes;
  std::map<std::string_view, size_t, std::less<>> probe_index;
  probe_by_spec_.clear();
  probes.reserve(config.probes.size());
  for (const auto& probe_config : config.probes) {
    const ProbeSpec& spec = probe_config->spec();
    ProbeEntry entry;
    entry.spec = &spec;
    // The old entries' specs are still held (probe_configs_ is replaced below).
    if (auto it = probe_index_.find(spec.name); it != probe_index_.end()) {
      ProbeEntry& old = probes_[it->second];
      if (old.spec->type == spec.type) {
        entry.last = std::move(old.last);
        old.last.reset();
        entry.reported_at = old.reported_at;
      }
    }
    probe_index.emplace(spec.name, probes.size());
    probe_by_spec_.emplace(&spec, probes.size());
    probes.push_back(std::move(entry));
  }
  for (ProbeEntry& old : probes_) {
    if (old.last) ReleaseNames(*old.last, field_names_);  // a probe gone, or of a new type
  }
  probes_ = std::move(probes);
  probe_index_ = std::move(probe_index);
  probe_configs_ = config.probes;
  dirty_ = true;
  // A publication under way was written from the entries just replaced: start it again.
  AbandonPublication();
}

void StatusBoard::OnReloadFailed(const std::string& error, TimePoint now) {
  last_reload_ok_ = false;
  last_reload_time_ = now;
  last_reload_error_ = error;
  dirty_ = true;
}

void StatusBoard::OnProbeResult(const ProbeSpec& probe, const ProbeResult& result, TimePoint now) {
  size_t index = 0;
  if (auto by_spec = probe_by_spec_.find(&probe); by_spec != probe_by_spec_.end()) {
    index = by_spec->second;
  } else if (auto by_name = probe_index_.find(probe.name); by_name != probe_index_.end()) {
    index = by_name->second;
  } else {
    return;  // a run that outlived its configuration
  }
  ProbeEntry& entry = probes_[index];
  // A reading, up or down included: what an operator acts on is the rule it changes,
  // and that is published within kPublishInterval. When thousands of probes flap (an
  // overloaded network), re-rendering each of them ten times a second would add to it.
  readings_changed_ = true;
  if (!entry.last) entry.last.emplace();
  AssignResult(*entry.last, result, field_names_);
  entry.reported_at = now;
  entry.changed = true;
}

void StatusBoard::OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                                  TimePoint now) {
  RuleEntry* found = nullptr;
  if (&rules == indexed_rules_.get()) {
    if (index < rules_.size()) found = &rules_[index];
  } else if (indexed_rules_ != nullptr) {
    const std::optional<size_t> own = indexed_rules_->Find(rules.definition(index).name);
    if (own && *own < rules_.size()) found = &rules_[*own];
  }
  if (found == nullptr) return;
  RuleEntry& entry = *found;
  const OptionalTime since = GradeSince(rules, index);
  // Evaluations happen on every probe result; only a visible change makes the document
  // worth publishing again (evaluated_at alone does not). Fields are compared before they
  // are assigned, so an evaluation that changed nothing copies no string.
  bool changed = false;
  auto update = [&changed](auto& field, const auto& value) {
    if (field == value) return;
    field = value;
    changed = true;
  };
  update(entry.grade, outcome.grade);
  update(entry.since, since);
  update(entry.stale, outcome.stale);
  update(entry.reason, outcome.reason);
  update(entry.held_by, outcome.held_by);
  update(entry.config_error, outcome.config_error);
  if (changed) dirty_ = true;
  entry.evaluated_at = now;
  entry.changed = true;
}

void StatusBoard::OnActionDecided(const JournalRecord& record, const PlannedAction& /*plan*/,
                                  TimePoint /*detected_at*/) {
  actions_.push_front(ActionEntry{record, std::nullopt});
  while (actions_.size() > max_actions_) actions_.pop_back();
  dirty_ = true;
}

void StatusBoard::OnActionFinished(const JournalRecord& record) {
  for (ActionEntry& entry : actions_) {
    if (entry.decided.id == record.id) {
      entry.finished = record;
      dirty_ = true;
      return;
    }
  }
  // Its decision already fell off the end of the list: nothing to complete.
}

void StatusBoard::OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint /*now*/) {
  if (SameBreakers(breakers, breakers_)) return;
  breakers_ = breakers;
  dirty_ = true;
}

void StatusBoard::SetPausedUntil(std::optional<TimePoint> until) {
  if (paused_until_ == until) return;
  paused_until_ = until;
  dirty_ = true;
}

namespace {

// Probe errors and reasons are text from the outside world: invalid UTF-8 is replaced,
// never turned into an exception.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string StatusBoard::RenderProbe(const ProbeEntry& probe) {
  json entry = {
      {"name", probe.spec->name},
      {"type", probe.spec->type},
      {"labels", probe.spec->labels},
      {"up", nullptr},
      {"latency_seconds", nullptr},
      {"fields", json::object()},
      {"error", nullptr},
      {"reported_at", TimeOrNull(probe.reported_at)},
  };
  if (probe.last) {
    entry["up"] = probe.last->up;
    entry["latency_seconds"] = probe.last->latency_seconds;
    for (const auto& [field, value] : probe.last->fields)
      entry["fields"][*field] = FieldJson(value);
    if (!probe.last->error.empty()) entry["error"] = probe.last->error;
    entry["config_error"] = probe.last->config_error;
  }
  return Dump(entry);
}

std::string StatusBoard::RenderRule(size_t index) const {
  const RuleEntry& rule = rules_[index];
  const RuleDefinition& definition = indexed_rules_->definition(index);
  const json entry = {
      {"name", definition.name},
      {"grade", std::string(GradeName(rule.grade))},
      {"since", TimeOrNull(rule.since)},
      {"stale", rule.stale},
      {"reason", rule.reason},
      {"held_by", rule.held_by ? json(*rule.held_by) : json(nullptr)},
      {"config_error", rule.config_error},
      {"evaluated_at", TimeOrNull(rule.evaluated_at)},
      {"labels", definition.labels},
      {"probes", indexed_rules_->ProbesRead(index)},
  };
  return Dump(entry);
}

template <typename Entry>
std::string_view StatusBoard::Stored(const Entry& entry, size_t step) const {
  if (entry.length == 0) return {};
  if (publishing_ && step < round_cursor_) {
    return std::string_view(next_).substr(entry.offset, entry.length);
  }
  // Release() zeroes every length, so an entry with one has its bytes in published_.
  return std::string_view(*published_).substr(entry.offset, entry.length);
}

template <typename Appended>
bool StatusBoard::AppendEntries(std::string& out, size_t& cursor, size_t render_budget,
                                size_t byte_budget, const Appended& appended) const {
  const size_t steps = probes_.size() + 1 + rules_.size();
  const size_t stop_at = out.size() + std::min(byte_budget, SIZE_MAX - out.size());
  size_t rendered = 0;
  for (; cursor < steps; ++cursor) {
    if (out.size() >= stop_at) return false;
    if (cursor == probes_.size()) {
      out += "],\"rules\":[";
      continue;
    }
    const bool probe = cursor < probes_.size();
    const size_t index = probe ? cursor : cursor - probes_.size() - 1;
    const bool changed = probe ? probes_[index].changed : rules_[index].changed;
    const std::string_view stored =
        probe ? Stored(probes_[index], cursor) : Stored(rules_[index], cursor);
    const bool render = changed || stored.empty();
    if (render && rendered == render_budget) return false;
    if (index > 0) out += ',';
    const size_t offset = out.size();
    if (!render) {
      out += stored;
    } else if (probe) {
      out += RenderProbe(probes_[index]);
    } else {
      out += RenderRule(index);
    }
    if (render) ++rendered;
    appended(cursor, offset, out.size() - offset);
  }
  return true;
}

std::string StatusBoard::Head() const {
  json breakers = json::array();
  for (const BreakerReport& breaker : breakers_) {
    breakers.push_back({
        {"name", breaker.name},
        {"state", breaker.open ? "open" : "closed"},
        {"open", breaker.open},
        {"admitted_in_window", breaker.admitted_in_window},
        {"max_actions", breaker.max_actions},
        {"open_until", TimeOrNull(breaker.open_until)},
        {"scope", breaker.fleet ? "fleet" : "local"},
    });
    if (breaker.fleet) {
      json& entry = breakers.back();
      entry["redis"] = breaker.redis;
      entry["redis_reachable"] = breaker.redis_reachable;
      entry["redis_error"] =
          breaker.redis_error.empty() ? json(nullptr) : json(breaker.redis_error);
      entry["claims"] = breaker.claims;
    }
  }

  json actions = json::array();
  for (const ActionEntry& action : actions_)
    actions.push_back(ActionJson(action.decided, action.finished));

  const json config = {
      {"path", config_path_},
      {"last_reload_ok", last_reload_ok_},
      {"last_reload_time", TimeOrNull(last_reload_time_)},
      {"last_reload_error", last_reload_error_.empty() ? json(nullptr) : json(last_reload_error_)},
  };

  // The document is written by hand in the order nlohmann's sorted objects would dump it,
  // so that rule and probe entries can be spliced in from their renderings.
  return "{\"breakers\":" + Dump(breakers) + ",\"config\":" + Dump(config) +
         ",\"last_actions\":" + Dump(actions) +
         ",\"paused_until\":" + Dump(TimeOrNull(paused_until_)) + ",\"probes\":[";
}

std::string StatusBoard::Tail() { return "],\"version\":" + Dump(ROLLGUARD_VERSION) + "}"; }

std::string StatusBoard::Json() const {
  std::string out = Head();
  // Reserved at about its size: growing a multi-megabyte string by doubling copied it over
  // and over (most of Json()'s time at 10,000 probes).
  out.reserve(std::max(last_size_, next_.size()) + out.size());
  size_t cursor = 0;
  AppendEntries(out, cursor, SIZE_MAX, SIZE_MAX, [](size_t, size_t, size_t) {});
  out += Tail();
  return out;
}

std::optional<TimePoint> StatusBoard::MaybePublish(TimePoint now) {
  // One atomic load per loop iteration while nobody asks; the exchange only on a request.
  if (requested_.load(std::memory_order_relaxed) && requested_.exchange(false)) {
    wanted_until_ = now + kWantedFor;
  }
  if (!wanted_until_) return std::nullopt;
  // The clock is the wall clock: stepped back, it would keep the document for as long as
  // the step. Never more than kWantedFor from now.
  if (*wanted_until_ - now > kWantedFor) wanted_until_ = now + kWantedFor;
  if (now >= *wanted_until_) {
    Release();
    return std::nullopt;
  }
  if (!publishing_) {
    // Without a current publication (the first, or the first after a release) a reader
    // is waiting for one: it starts now, whatever the intervals say.
    const bool waited_for = published_ == nullptr;
    if (!waited_for && !dirty_ && !readings_changed_) return std::nullopt;
    const Duration interval = dirty_ ? kPublishInterval : kReadingsInterval;
    if (!waited_for && last_publish_ && now - *last_publish_ < interval && now >= *last_publish_) {
      return *last_publish_ + interval;
    }
    // A publication starts: what changes from here on is news for the next one.
    publishing_ = true;
    round_cursor_ = 0;
    dirty_ = false;
    readings_changed_ = false;
    next_ = Head();
    // The last publication's size is a close guess: growing a multi-megabyte string by
    // doubling copied it over and over (most of the rendering time at 10,000 probes).
    next_.reserve(last_size_ + last_size_ / 16 + next_.size());
  } else if (now - last_slice_ < kSliceSpacing && now >= last_slice_) {
    return last_slice_ + kSliceSpacing;
  }
  last_slice_ = now;
  const bool done = AppendEntries(next_, round_cursor_, kRenderSlice, kCopySlice,
                                  [this](size_t step, size_t offset, size_t length) {
                                    auto record = [&](auto& entry) {
                                      entry.offset = offset;
                                      entry.length = length;
                                      entry.changed = false;
                                    };
                                    if (step < probes_.size()) {
                                      record(probes_[step]);
                                    } else {
                                      record(rules_[step - probes_.size() - 1]);
                                    }
                                  });
  if (!done) return now + kSliceSpacing;
  next_ += Tail();
  publishing_ = false;
  round_cursor_ = 0;
  last_size_ = next_.size();
  auto document = std::make_shared<const std::string>(std::move(next_));
  next_ = std::string();  // moved from: make sure it holds nothing
  {
    std::lock_guard<std::mutex> lock(published_mutex_);
    published_ = std::move(document);
  }
  published_cv_.notify_all();
  last_publish_ = now;
  if (dirty_) return now + kPublishInterval;
  if (readings_changed_) return now + kReadingsInterval;
  return std::nullopt;
}

void StatusBoard::AbandonPublication() {
  publishing_ = false;
  round_cursor_ = 0;
  // Swapped, not assigned: libstdc++ assigns an empty string into the buffer it already
  // has, which would keep the half-written document's megabytes.
  std::string().swap(next_);
}

void StatusBoard::Release() {
  wanted_until_.reset();
  AbandonPublication();
  for (ProbeEntry& probe : probes_) probe.length = 0;
  for (RuleEntry& rule : rules_) rule.length = 0;
  std::shared_ptr<const std::string> released;
  {
    std::lock_guard<std::mutex> lock(published_mutex_);
    released.swap(published_);
  }
  // `released` frees the document here, on the loop, unless a reader still holds it (it is
  // then freed when that reader is done with it).
}

size_t StatusBoard::HeldBytes() const {
  // An empty string's capacity is its inline buffer, not heap.
  const size_t inline_capacity = std::string().capacity();
  const size_t next = next_.capacity() > inline_capacity ? next_.capacity() : 0;
  return next + (published_ != nullptr ? published_->capacity() : 0);
}

std::shared_ptr<const std::string> StatusBoard::Published() const {
  std::lock_guard<std::mutex> lock(published_mutex_);
  return published_;
}

void StatusBoard::Want() { requested_.store(true); }

void StatusBoard::SetWake(std::function<void()> wake) { wake_ = std::move(wake); }

std::shared_ptr<const std::string> StatusBoard::Request(Duration wait) {
  Want();
  std::unique_lock<std::mutex> lock(published_mutex_);
  if (published_ != nullptr || requests_stopped_ || wait <= Duration::zero()) return published_;
  lock.unlock();
  // Outside the lock: the loop may be publishing, and the wake must not wait for it.
  if (wake_) wake_();
  lock.lock();
  published_cv_.wait_for(lock, wait, [this] { return published_ != nullptr || requests_stopped_; });
  return published_;
}

void StatusBoard::StopRequests() {
  {
    std::lock_guard<std::mutex> lock(published_mutex_);
    requests_stopped_ = true;
  }
  published_cv_.notify_all();
}

}  // namespace rollguard
