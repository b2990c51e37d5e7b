#include "daemon/responder.h"

#include <pwd.h>
#include <systemd/sd-event.h>
#include <time.h>

#include <deque>
#include <filesystem>
#include <set>

#include "daemon/action_journal.h"
#include "daemon/action_planner.h"
#include "daemon/fleet_breaker.h"
#include "daemon/http_action.h"
#include "daemon/state_store.h"
#include "daemon/systemd_action.h"
#include "probes/exec_runner.h"

namespace rollguard {
namespace {

// An incident spans the time a rule spends at warning or worse.
bool IsIncidentGrade(Grade grade) { return !IsWorseThan(Grade::kWarning, grade); }

// The unnamed breaker is called "default" in the journal, status and metrics
// ([breaker default] is therefore a reserved name).
std::string JournalBreakerName(const std::string& name) { return name.empty() ? "default" : name; }
std::string BreakerName(const std::string& journal_name) {
  return journal_name == "default" ? "" : journal_name;
}

// Before a rule was ever graded on data, its previous grade is "none", not excellent:
// rollguard never reports a grade it did not observe.
std::string PreviousGradeName(const RuleOutcome& outcome) {
  return outcome.previous_known ? std::string(GradeName(outcome.previous)) : "none";
}

// The journal's decision name for a breaker closed by hand.
constexpr std::string_view kBreakerResetDecision = "breaker_reset";

bool IsBackToWarningOrBetter(Grade grade) { return !IsWorseThan(grade, Grade::kWarning); }

uint64_t MonotonicNowUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

std::string SecondsText(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3fs", seconds);
  return buffer;
}

class ResponderImpl final : public Responder {
 public:
  ResponderImpl(sd_event* event, ProbeContext& probes, bool force_dry_run, EventLog& log,
                const Clock& clock, RuntimeObserver& observer, StateStore store,
                ActionJournal journal)
      : event_(event),
        log_(log),
        clock_(clock),
        observer_(observer),
        force_dry_run_(force_dry_run),
        store_(std::move(store)),
        journal_(std::move(journal)),
        runner_(event),
        http_(probes),
        systemd_(event) {}

  ~ResponderImpl() override {
    for (auto& [id, verify] : verifies_) sd_event_source_disable_unref(verify.timer);
    sd_event_source_disable_unref(fleet_refresh_);
  }

  // Loads state.json and replays journal records it does not cover yet.
  Status Load(const Config& config) {
    Reconfigure(config);
    auto state = store_.Load();
    if (!state) return Fail(state.error().message);
    state_ = std::move(*state);
    planner_.RestoreBreakerStates(state_.breakers);
    planner_.RestoreLastRuns(state_.last_runs);

    auto records = ActionJournal::ReadAll(journal_path_);
    if (!records) return Fail(records.error().message);
    const size_t covered = std::min<size_t>(state_.journal_records, records->size());
    size_t replayed = 0;
    for (size_t i = covered; i < records->size(); ++i) {
      const JournalRecord& record = (*records)[i];
      if (record.phase != JournalPhase::kDecided) continue;
      if (record.decision == kBreakerResetDecision) {
        planner_.ResetBreaker(BreakerName(record.breaker), record.time);
        ++replayed;
        continue;
      }
      if (record.decision != "executed") continue;
      // Decided and journaled, but killed before state.json caught up: count it.
      planner_.ReplayExecuted(record.action, BreakerName(record.breaker), record.time);
      if (auto grade = ParseGrade(record.grade)) {
        state_.rules[record.rule] = PersistedRule{std::string(GradeName(*grade)), record.time};
        // The incident it acted for, so the restart neither reopens nor re-acts on it.
        if (!record.incident.empty()) {
          IncidentState& incident = state_.incidents[record.rule];
          if (incident.id != record.incident) {
            incident = IncidentState{};
            incident.id = record.incident;
            incident.opened = record.time;
          }
          incident.grade = std::string(GradeName(*grade));
          incident.acted = true;
          incident.actions_run.push_back(record.action);
        }
      }
      ++replayed;
    }
    state_.journal_records = records->size();
    for (const auto& [rule, incident] : state_.incidents) restored_incidents_.insert(rule);
    RestoreVerifies();
    if (replayed > 0) {
      log_.Warning("replayed " + std::to_string(replayed) +
                   " journaled action(s) that the last run did not get to persist");
    }
    return Persist();
  }

  void RestoreGrades(RuleSet& rules) override {
    for (size_t i = 0; i < rules.size(); ++i) {
      auto it = state_.rules.find(rules.definition(i).name);
      if (it == state_.rules.end()) continue;
      auto grade = ParseGrade(it->second.grade);
      if (!grade) continue;
      rules.Restore(i, RuleSnapshot{*grade, it->second.since});
    }
  }

  void OnOutcome(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                 TimePoint now) override {
    const RuleDefinition& rule = rules.definition(index);
    // Every rule is evaluated on every result of its probes: the bookkeeping below costs
    // nothing (no lookup by name, no copy) for the common case of a rule that is neither
    // held, nor verified, nor restored.
    if (outcome.held_by) {
      auto [held, added] = held_by_.try_emplace(rule.name, *outcome.held_by);
      if (!added && held->second != *outcome.held_by) held->second = *outcome.held_by;
    } else if (!held_by_.empty()) {
      held_by_.erase(rule.name);
    }
    if (!outcome.stale) {
      if (!verifies_.empty() && IsBackToWarningOrBetter(outcome.grade)) {
        VerifyPassed(rule.name, now);
      }
      // The first fresh evaluation after a start decides a restored incident: if the rule
      // changes out of it now, it recovered while rollguard was down.
      if (!outcome.changed && !restored_incidents_.empty()) restored_incidents_.erase(rule.name);
    }
    if (!outcome.changed) return;
    const std::string from = PreviousGradeName(outcome);
    const std::string to(GradeName(outcome.grade));
    const LogFields fields = {
        {"ROLLGUARD_RULE", rule.name}, {"ROLLGUARD_GRADE", to}, {"ROLLGUARD_PREVIOUS_GRADE", from}};
    const std::string message = "rule " + rule.name + ": " + from + " -> " + to + " (" +
                                outcome.reason + ")" + (outcome.stale ? " [stale]" : "");
    if (IsWorseThan(outcome.grade, outcome.previous)) {
      log_.Warning(message, fields);
    } else {
      log_.Info(message, fields);
    }
    state_.rules[rule.name] = PersistedRule{to, now};
    TrackIncident(rule.name, outcome, now);
    if (!outcome.stale && !restored_incidents_.empty()) restored_incidents_.erase(rule.name);

    std::string why_not;
    std::vector<std::string> names = ActionsToConsider(rule, outcome, &why_not);
    if (!why_not.empty()) log_.Warning("rule " + rule.name + ": no action: " + why_not, fields);
    if (!names.empty()) {
      Trigger trigger{rule.name,
                      outcome.grade,
                      from,
                      outcome.reason,
                      outcome.held_by,
                      Incident(rule.name),
                      {names.begin(), names.end()},
                      outcome.condition_since,
                      "",
                      rules.RenderSummary(index, now)};
      auto service = rule.labels.find("service");
      if (service != rule.labels.end()) trigger.service = service->second;
      RunNext(std::move(trigger));
    }
    // A grade change alone is saved by the next Flush(): fsyncing state.json for every
    // change would stall the loop when many rules move at once. Anything that admitted
    // an action was already saved, synchronously, before the action started.
    dirty_ = true;
  }

  void Flush() override {
    if (!dirty_) return;
    if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
  }

  void Reconfigure(const Config& config) override {
    actions_.clear();
    for (const ActionConfig& action : config.actions) actions_.emplace(action.name, action);
    planner_.Configure(config.breakers);
    config_dry_run_ = config.daemon.dry_run;
    node_name_ = config.daemon.name;
    // Fleet clients are kept across reloads (calls in flight finish); only their
    // settings change. A breaker that is no longer fleet-scoped drops its client.
    std::map<std::string, std::unique_ptr<FleetBreakerClient>> clients;
    for (const BreakerConfig& breaker : config.breakers) {
      if (!breaker.fleet) continue;
      auto existing = fleet_.find(breaker.name);
      if (existing != fleet_.end()) {
        existing->second->Update(breaker.policy, *breaker.fleet);
        clients.emplace(breaker.name, std::move(existing->second));
      } else {
        clients.emplace(breaker.name, std::make_unique<FleetBreakerClient>(
                                          event_, JournalBreakerName(breaker.name), breaker.policy,
                                          *breaker.fleet));
      }
    }
    fleet_ = std::move(clients);
    if (!fleet_.empty() && fleet_refresh_ == nullptr) {
      if (sd_event_add_time_relative(event_, &fleet_refresh_, CLOCK_MONOTONIC, 0, 100'000,
                                     &ResponderImpl::OnFleetRefresh, this) < 0) {
        fleet_refresh_ = nullptr;
        log_.Error("cannot schedule reading fleet breakers from Redis; status will not show them");
      }
    }
  }

  std::string BreakerSummary(TimePoint now) const override {
    std::string open;
    for (const std::string& name : planner_.BreakerNames()) {
      const Breaker* breaker = planner_.FindBreaker(name);
      if (breaker == nullptr || !breaker->IsOpen(now)) continue;
      const auto until = breaker->OpenUntil(now);
      open += std::string(open.empty() ? "" : ", ") + (name.empty() ? "breaker" : name) +
              " open until " + (until ? FormatIso8601(*until) : "reset");
    }
    return open.empty() ? "breaker closed" : open;
  }

  int RunningActions() const override {
    return runner_.Running() + http_.Running() + systemd_.Running() + fleet_pending_;
  }

  Result<TimePoint> Pause(Duration duration, TimePoint now) override {
    const TimePoint until = now + duration;
    state_.paused_until = until;
    if (Status saved = Persist(); !saved) return Fail(saved.error().message);
    log_.Warning("paused until " + FormatIso8601(until) +
                 ": rules are evaluated and notified, no action runs");
    observer_.OnPausedChanged(until, now);
    return until;
  }

  bool Resume(TimePoint now) override {
    const bool was_paused = PausedUntil(now).has_value();
    state_.paused_until.reset();
    if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
    log_.Warning(was_paused ? "resumed: actions run again" : "resume: was not paused");
    observer_.OnPausedChanged(std::nullopt, now);
    return was_paused;
  }

  std::optional<TimePoint> PausedUntil(TimePoint now) const override {
    if (state_.paused_until && *state_.paused_until > now) return state_.paused_until;
    return std::nullopt;
  }

  Status ResetBreaker(const std::string& name, TimePoint now) override {
    const std::string internal = BreakerName(name);
    if (planner_.FindBreaker(internal) == nullptr) {
      std::string known;
      for (const std::string& breaker : planner_.BreakerNames()) {
        known += (known.empty() ? "" : ", ") + JournalBreakerName(breaker);
      }
      return Fail("no breaker named \"" + name + "\" (known: " + known + ")");
    }
    JournalRecord record;
    record.time = now;
    record.phase = JournalPhase::kDecided;
    record.id = journal_.NewId(now);
    record.decision = std::string(kBreakerResetDecision);
    record.breaker = JournalBreakerName(internal);
    record.reason = "closed by hand (rollguard breaker reset)";
    // Journaled first, like an admission: a crash before state.json is saved replays it.
    if (Status journaled = Journal(record); !journaled) return journaled;
    planner_.ResetBreaker(internal, now);
    if (auto client = fleet_.find(internal); client != fleet_.end()) {
      // For the whole fleet: the history in Redis is what every daemon consults.
      const std::string name_shown = record.breaker;
      client->second->Reset([this, name_shown](const std::string& error) {
        if (error.empty()) {
          log_.Warning("fleet breaker " + name_shown + " reset in Redis",
                       {{"ROLLGUARD_BREAKER", name_shown}});
          RefreshFleet();
        } else {
          log_.Error("fleet breaker " + name_shown + ": reset not applied in Redis: " + error,
                     {{"ROLLGUARD_BREAKER", name_shown}});
        }
      });
    }
    if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
    log_.Warning("breaker " + record.breaker + " reset by hand",
                 {{"ROLLGUARD_BREAKER", record.breaker}});
    observer_.OnBreakers(Breakers(now), now);
    return {};
  }

  Status RecordDeploy(const std::string& service, const std::string& version,
                      TimePoint now) override {
    if (service.find_first_of(" \t\r\n\"") != std::string::npos) {
      return Fail("service \"" + service + "\": expected a label value without spaces");
    }
    state_.deploys[service] = DeployRecord{version, now};
    if (Status saved = Persist(); !saved) return saved;
    log_.Info("deploy recorded" + (service.empty() ? std::string() : " for " + service) +
                  (version.empty() ? std::string() : " at version " + version),
              {{"ROLLGUARD_SERVICE", service}, {"ROLLGUARD_VERSION", version}});
    return {};
  }

  std::vector<BreakerReport> Breakers(TimePoint now) const override {
    std::vector<BreakerReport> reports;
    for (const std::string& name : planner_.BreakerNames()) {
      const Breaker* breaker = planner_.FindBreaker(name);
      if (breaker == nullptr) continue;
      BreakerReport report = LocalBreakerReport(JournalBreakerName(name), *breaker, now);
      if (auto client = fleet_.find(name); client != fleet_.end()) {
        // As Redis last showed it; until the first answer, this daemon's own copy.
        const FleetBreakerView& view = client->second->view();
        report.fleet = true;
        report.redis = client->second->settings().redis;
        report.redis_reachable = view.reachable;
        report.redis_error = view.error;
        if (view.reachable) {
          report.admitted_in_window = view.admitted_in_window;
          report.open_until = view.open_until && *view.open_until > now
                                  ? view.open_until
                                  : std::optional<TimePoint>();
          report.open = report.open_until.has_value();
          report.claims = view.claims;
        }
      }
      reports.push_back(std::move(report));
    }
    return reports;
  }

 private:
  // The remaining actions of one grade entry: `on_critical = a b` runs a, then b.
  struct Trigger {
    std::string rule;
    Grade grade;
    std::string previous;  // a grade name, or "none" before the first graded data
    std::string reason;
    std::optional<std::string> held_by;
    std::string incident;
    std::deque<std::string> remaining;
    TimePoint detected_at;  // when the triggering condition first held
    std::string service;    // the rule's `service` label ("" when it has none)
    std::string summary;    // the rule's rendered summary at the grade change
  };

  // An action with `verify` that finished; checked when its timer fires.
  struct PendingVerify {
    ResponderImpl* owner = nullptr;
    uint64_t id = 0;
    std::string action;
    Duration verify{0};
    TimePoint finished;
    Trigger trigger;  // the rule, incident, ... the action ran for
    sd_event_source* timer = nullptr;
  };

  // Logs the moment a fleet breaker's Redis stops or starts answering, once each way.
  void NoteFleetReachable(const std::string& breaker, bool reachable, const std::string& error) {
    auto it = fleet_reachable_.emplace(breaker, true).first;
    if (it->second == reachable) return;
    it->second = reachable;
    const LogFields fields = {{"ROLLGUARD_BREAKER", breaker}};
    if (reachable) {
      log_.Info("fleet breaker " + breaker + ": Redis answers again", fields);
    } else {
      log_.Error("fleet breaker " + breaker + ": Redis unreachable (" + error +
                     "); fleet actions are decided as configured (fail closed unless fail_open)",
                 fields);
    }
  }

  // Reads every fleet breaker from Redis (status and metrics); every 5 s.
  void RefreshFleet() {
    for (auto& [name, client] : fleet_) {
      const std::string shown = JournalBreakerName(name);
      client->Refresh(clock_.Now(), [this, shown](const FleetBreakerView& view) {
        NoteFleetReachable(shown, view.reachable, view.error);
        const TimePoint now = clock_.Now();
        observer_.OnBreakers(Breakers(now), now);
      });
    }
  }

  static int OnFleetRefresh(sd_event_source* source, uint64_t usec, void* userdata) {
    auto* self = static_cast<ResponderImpl*>(userdata);
    self->RefreshFleet();
    sd_event_source_set_time(source, usec + 5'000'000);
    sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
    return 0;
  }

  void ScheduleVerify(const ActionConfig& action, const Trigger& trigger, TimePoint finished) {
    Trigger pending = trigger;
    pending.remaining.clear();
    if (!action.escalate.empty()) pending.remaining.push_back(action.escalate);
    ArmVerify(action.name, *action.verify, finished, std::move(pending));
    dirty_ = true;  // saved with the next Flush(): a restart checks it at the same time
  }

  // Starts the timer of a verify due at finished + verify (wall clock): at once when a
  // restart finds it already due.
  void ArmVerify(const std::string& action, Duration verify_time, TimePoint finished,
                 Trigger trigger) {
    const uint64_t id = next_verify_id_++;
    PendingVerify& verify = verifies_[id];
    verify.owner = this;
    verify.id = id;
    verify.action = action;
    verify.verify = verify_time;
    verify.finished = finished;
    verify.trigger = std::move(trigger);
    const Duration left = std::max(Duration{0}, finished + verify_time - clock_.Now());
    const uint64_t due =
        MonotonicNowUs() +
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(left).count());
    if (sd_event_add_time(event_, &verify.timer, CLOCK_MONOTONIC, due, 0,
                          &ResponderImpl::OnVerifyDue, &verify) < 0) {
      log_.Error("action " + action + ": cannot schedule its verify; it will not be checked");
      verifies_.erase(id);
    }
  }

  // The verifies state.json held at start.
  void RestoreVerifies() {
    for (const PersistedVerify& saved : state_.verifies) {
      Trigger trigger;
      trigger.rule = saved.rule;
      trigger.grade = ParseGrade(saved.grade).value_or(Grade::kCritical);
      trigger.previous = saved.previous_grade;
      trigger.reason = saved.reason;
      trigger.incident = saved.incident;
      if (!saved.escalate.empty()) trigger.remaining.push_back(saved.escalate);
      trigger.detected_at = saved.detected_at;
      trigger.service = saved.service;
      trigger.summary = saved.summary;
      ArmVerify(saved.action, saved.verify, saved.finished, std::move(trigger));
    }
    if (!state_.verifies.empty()) {
      log_.Info("resumed " + std::to_string(state_.verifies.size()) +
                " pending verify check(s) from the last run");
    }
  }

  // The rule is back to warning or better: every verify pending for it passed.
  void VerifyPassed(const std::string& rule, TimePoint now) {
    for (auto it = verifies_.begin(); it != verifies_.end();) {
      if (it->second.trigger.rule != rule) {
        ++it;
        continue;
      }
      log_.Info("verify of " + it->second.action + " for rule " + rule + ": passed, back to " +
                    std::string(GradeName(CurrentGrade(rule).value_or(Grade::kExcellent))) + " " +
                    FormatDuration(now - it->second.finished) + " after it ran",
                {{"ROLLGUARD_RULE", rule}, {"ROLLGUARD_ACTION", it->second.action}});
      sd_event_source_disable_unref(it->second.timer);
      it = verifies_.erase(it);
      dirty_ = true;
    }
  }

  std::optional<Grade> CurrentGrade(const std::string& rule) const {
    auto it = state_.rules.find(rule);
    if (it == state_.rules.end()) return std::nullopt;
    return ParseGrade(it->second.grade);
  }

  static int OnVerifyDue(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* verify = static_cast<PendingVerify*>(userdata);
    verify->owner->VerifyDue(verify->id);
    return 0;
  }

  void VerifyDue(uint64_t id) {
    auto it = verifies_.find(id);
    if (it == verifies_.end()) return;
    PendingVerify verify = std::move(it->second);
    verifies_.erase(it);
    dirty_ = true;
    sd_event_source_disable_unref(verify.timer);
    const TimePoint now = clock_.Now();
    const Grade grade = CurrentGrade(verify.trigger.rule).value_or(verify.trigger.grade);
    if (IsBackToWarningOrBetter(grade)) return;  // cannot happen: VerifyPassed saw it
    VerifyFailure failure;
    failure.rule = verify.trigger.rule;
    failure.action = verify.action;
    failure.incident = verify.trigger.incident;
    failure.grade = std::string(GradeName(grade));
    failure.verify = verify.verify;
    failure.action_finished = verify.finished;
    failure.now = now;
    failure.escalate = verify.trigger.remaining.empty() ? "" : verify.trigger.remaining.front();
    const std::string message = "rollback did not help: rule " + failure.rule + " is still " +
                                failure.grade + " " + FormatDuration(verify.verify) + " after " +
                                failure.action + " ran" +
                                (failure.escalate.empty() ? " (no escalate action)"
                                                          : "; escalating to " + failure.escalate);
    log_.Error(message, {{"ROLLGUARD_RULE", failure.rule},
                         {"ROLLGUARD_ACTION", failure.action},
                         {"ROLLGUARD_GRADE", failure.grade}});
    observer_.OnVerifyFailed(failure);
    if (verify.trigger.remaining.empty()) return;
    Trigger escalation = std::move(verify.trigger);
    escalation.grade = grade;
    escalation.reason = "rollback did not help: " + failure.action + " ran " +
                        FormatDuration(now - verify.finished) + " ago and the rule is still " +
                        failure.grade;
    if (auto held = held_by_.find(escalation.rule); held != held_by_.end()) {
      escalation.held_by = held->second;
    } else {
      escalation.held_by.reset();
    }
    escalation.incident = Incident(escalation.rule);
    RunNext(std::move(escalation));
    if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
  }

  std::string Incident(const std::string& rule) const {
    auto it = state_.incidents.find(rule);
    return it == state_.incidents.end() ? "" : it->second.id;
  }

  void TrackIncident(const std::string& rule, const RuleOutcome& outcome, TimePoint now) {
    const bool was = IsIncidentGrade(outcome.previous);
    const bool is = IsIncidentGrade(outcome.grade);
    if (is && !was) {
      IncidentState incident;
      incident.id = rule + "-" + std::to_string(ToMillis(now));
      incident.opened = now;
      incident.grade = std::string(GradeName(outcome.grade));
      state_.incidents[rule] = incident;
      log_.Info("incident " + incident.id + " opened", {{"ROLLGUARD_RULE", rule}});
    } else if (!is && was) {
      auto it = state_.incidents.find(rule);
      if (it != state_.incidents.end()) {
        ResolvedIncident resolved;
        resolved.rule = rule;
        resolved.incident = it->second.id;
        resolved.opened = it->second.opened;
        resolved.resolved = now;
        resolved.grade = std::string(GradeName(outcome.grade));
        resolved.actions_run = it->second.actions_run;
        // Decided by the first fresh evaluation after a start: it got better while
        // rollguard was not running.
        resolved.while_down = !outcome.stale && restored_incidents_.count(rule) > 0;
        log_.Info("incident " + resolved.incident + " resolved" +
                      (resolved.while_down ? " while rollguard was not running" : "") +
                      ": back to " + resolved.grade,
                  {{"ROLLGUARD_RULE", rule}, {"ROLLGUARD_INCIDENT", resolved.incident}});
        state_.incidents.erase(it);
        observer_.OnIncidentResolved(resolved);
      }
    } else if (is) {
      auto it = state_.incidents.find(rule);
      if (it != state_.incidents.end()) it->second.grade = std::string(GradeName(outcome.grade));
    }
  }

  // Decides the next action of `trigger` and starts it; the one after it starts when it
  // finishes, so the order the rule wrote is the order they run in. An action on a fleet
  // breaker waits for its Redis's verdict (on the loop) and continues in Conclude().
  void RunNext(Trigger trigger) {
    while (!trigger.remaining.empty()) {
      const std::string name = trigger.remaining.front();
      trigger.remaining.pop_front();
      auto found = actions_.find(name);
      if (found == actions_.end()) continue;  // removed by a reload meanwhile
      const ActionConfig& action = found->second;
      const TimePoint now = clock_.Now();
      ActionContext context;
      context.now = now;
      context.paused = state_.paused_until && *state_.paused_until > now;
      context.dry_run = force_dry_run_ || config_dry_run_;
      context.held_by = trigger.held_by;
      if (const DeployRecord* deploy = LatestDeployFor(state_.deploys, trigger.service)) {
        context.last_deploy = deploy->time;
      }
      const PlannedAction plan = planner_.Decide(action, context);
      if (plan.fleet_pending) {
        AskFleet(action, plan, std::move(trigger));
        return;
      }
      if (Conclude(action, plan, trigger, {})) return;
    }
  }

  // The fleet's view of one pending decision.
  struct FleetClaim {
    std::string incident;  // "" when the action only shares the breaker
    std::string claim;     // "ACTION:INCIDENT"
    std::string holder;
  };

  void AskFleet(const ActionConfig& action, const PlannedAction& pending, Trigger trigger) {
    auto client = fleet_.find(action.breaker);
    if (client == fleet_.end()) {  // cannot happen: the planner only defers fleet breakers
      Conclude(action, planner_.AdmitLocally(action, clock_.Now(), false), trigger, {});
      return;
    }
    FleetAdmission admission;
    admission.breaker = JournalBreakerName(action.breaker);
    admission.policy = client->second->policy();
    admission.holder = node_name_;
    admission.member = journal_.NewId(clock_.Now());
    FleetClaim claim;
    claim.holder = node_name_;
    if (action.fleet) {
      // The deploy's version names the incident for every daemon (docs/fleet.md).
      const DeployRecord* deploy = LatestDeployFor(state_.deploys, trigger.service);
      claim.incident =
          FleetIncident(trigger.rule, deploy == nullptr ? "" : deploy->version, action.cooldown,
                        client->second->settings().lease, &admission.claim_ttl);
      claim.claim = action.name + ":" + claim.incident;
      admission.claim = claim.claim;
    }
    ++fleet_pending_;
    const std::string action_name = action.name;
    const bool fail_open = client->second->settings().fail_open;
    client->second->Admit(admission, [this, action_name, pending, fail_open, claim,
                                      trigger = std::move(trigger)](FleetVerdict verdict) mutable {
      --fleet_pending_;
      NoteFleetReachable(JournalBreakerName(pending.breaker),
                         verdict.kind != FleetVerdict::Kind::kUnreachable, verdict.error);
      auto found = actions_.find(action_name);
      if (found == actions_.end()) {  // removed by a reload while Redis answered
        RunNext(std::move(trigger));
        return;
      }
      PlannedAction plan = planner_.CompleteFleet(found->second, clock_.Now(), verdict, fail_open);
      plan.armed_until = pending.armed_until;
      if (verdict.kind == FleetVerdict::Kind::kClaimed) claim.holder = verdict.holder;
      if (!Conclude(found->second, plan, trigger, claim)) RunNext(std::move(trigger));
    });
  }

  // Journals and reports a decision; starts the action when executed. True when it
  // started (the trigger's next action then waits for it to finish).
  bool Conclude(const ActionConfig& action, const PlannedAction& plan, Trigger& trigger,
                const FleetClaim& claim) {
    const TimePoint now = clock_.Now();
    JournalRecord record;
    record.time = now;
    record.phase = JournalPhase::kDecided;
    record.id = journal_.NewId(now);
    record.rule = trigger.rule;
    record.action = action.name;
    record.grade = std::string(GradeName(trigger.grade));
    record.previous_grade = trigger.previous;
    record.decision = std::string(DecisionName(plan.decision));
    record.incident = trigger.incident;
    record.reason = trigger.reason;
    record.why = plan.why;
    record.breaker = JournalBreakerName(action.breaker);
    record.open_until = plan.open_until;
    record.fleet_incident = claim.incident;
    if (!claim.incident.empty()) record.fleet_holder = claim.holder;
    const Status journaled = Journal(record);
    observer_.OnActionDecided(record, plan, trigger.detected_at);
    if (plan.decision == ActionDecision::kExecuted) observer_.OnBreakers(Breakers(now), now);
    const LogFields fields = {{"ROLLGUARD_RULE", trigger.rule},
                              {"ROLLGUARD_ACTION", action.name},
                              {"ROLLGUARD_GRADE", record.grade},
                              {"ROLLGUARD_DECISION", record.decision}};
    if (plan.decision != ActionDecision::kExecuted) {
      log_.Warning("action " + action.name + " for rule " + trigger.rule + ": " + record.decision +
                       " (" + plan.why + ")",
                   fields);
      return false;
    }
    if (!journaled) {
      // An action that cannot be journaled does not run: the journal is what stops a
      // restart from running it twice. (A fleet claim taken for it stays: no other
      // daemon runs it either.)
      log_.Error("action " + action.name + " not run: " + journaled.error().message, fields);
      return false;
    }
    if (auto incident = state_.incidents.find(trigger.rule); incident != state_.incidents.end()) {
      incident->second.acted = true;
      incident->second.actions_run.push_back(action.name);
    }
    if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
    log_.Warning(
        "action " + action.name + " for rule " + trigger.rule + ": executing (" + plan.why + ")",
        fields);
    if (!claim.claim.empty()) {
      if (auto client = fleet_.find(action.breaker); client != fleet_.end()) {
        client->second->Hold(claim.claim, node_name_);
      }
    }
    Start(action, record, std::move(trigger), claim.claim);
    return true;
  }

  void Start(const ActionConfig& action, const JournalRecord& decided, Trigger trigger,
             const std::string& claim) {
    const std::string action_name = action.name;
    const std::string summary = trigger.summary;
    const std::string service = trigger.service;
    const std::string breaker = action.breaker;
    auto done = [this, decided, breaker, claim,
                 trigger = std::move(trigger)](const ExecResult& result) mutable {
      Finished(decided, result);
      if (!claim.empty()) {
        // The result goes into the claim, for the daemons that did not run it.
        if (auto client = fleet_.find(breaker); client != fleet_.end()) {
          client->second->Release(claim, node_name_, std::string(OutcomeName(result.outcome)));
        }
      }
      if (auto it = actions_.find(decided.action); it != actions_.end() && it->second.verify) {
        ScheduleVerify(it->second, trigger, clock_.Now());
      }
      RunNext(std::move(trigger));
    };
    if (action.type == "http") {
      HttpActionRequest request;
      request.method = action.method;
      request.url = action.url;
      request.headers = action.headers;
      request.timeout = action.timeout;
      request.expect_status = action.expect_status;
      request.expect_status_text = action.expect_status_text;
      request.body = RenderActionBody(action.body, {{"rule", decided.rule},
                                                    {"grade", decided.grade},
                                                    {"previous_grade", decided.previous_grade},
                                                    {"reason", decided.reason},
                                                    {"summary", summary},
                                                    {"action", action_name},
                                                    {"incident", decided.incident},
                                                    {"service", service},
                                                    {"dry_run", "false"}});
      http_.Start(std::move(request), std::move(done));
      return;
    }
    if (action.type == "systemd") {
      systemd_.Start(SystemdActionRequest{action.unit, action.operation, action.timeout},
                     std::move(done));
      return;
    }
    ExecRequest request;
    request.argv = action.argv;
    if (!action.user.empty()) {
      // setpriv (util-linux) sets gid, supplementary groups and uid in the child right
      // before it execs the command: the daemon itself never changes identity.
      const passwd* user = getpwnam(action.user.c_str());
      if (user == nullptr) {
        request.argv = {"/nonexistent/user " + action.user + " no longer exists"};
      } else {
        request.argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(user->pw_uid),
                        "--regid=" + std::to_string(user->pw_gid), "--init-groups", "--"};
        request.argv.insert(request.argv.end(), action.argv.begin(), action.argv.end());
      }
    }
    request.timeout = action.timeout;
    request.env = {"ROLLGUARD_RULE=" + decided.rule,
                   "ROLLGUARD_GRADE=" + decided.grade,
                   "ROLLGUARD_PREVIOUS_GRADE=" + decided.previous_grade,
                   "ROLLGUARD_REASON=" + decided.reason,
                   "ROLLGUARD_ACTION=" + action.name,
                   "ROLLGUARD_INCIDENT=" + decided.incident,
                   "ROLLGUARD_DRY_RUN=false"};
    const std::string rule_name = decided.rule;
    request.on_output_line = [this, action_name, rule_name](OutputStream, std::string_view line) {
      log_.Info(action_name + ": " + std::string(line),
                {{"ROLLGUARD_ACTION", action_name}, {"ROLLGUARD_RULE", rule_name}});
    };
    runner_.Start(std::move(request), std::move(done));
  }

  void Finished(const JournalRecord& decided, const ExecResult& result) {
    const TimePoint now = clock_.Now();
    JournalRecord record = decided;
    record.time = now;
    record.phase = JournalPhase::kFinished;
    record.result = std::string(OutcomeName(result.outcome));
    record.exit_code = result.exit_code;
    record.signal = result.signal;
    record.duration_seconds = ToSeconds(result.duration);
    record.error = result.error;
    if (Status journaled = Journal(record); !journaled) log_.Error(journaled.error().message);
    dirty_ = true;  // the finished record is durable in the journal; state.json can wait
    observer_.OnActionFinished(record);
    const LogFields fields = {{"ROLLGUARD_RULE", decided.rule},
                              {"ROLLGUARD_ACTION", decided.action},
                              {"ROLLGUARD_RESULT", record.result}};
    std::string message = "action " + decided.action + " for rule " + decided.rule + ": " +
                          record.result + " after " + SecondsText(ToSeconds(result.duration));
    if (!result.error.empty()) message += " (" + result.error + ")";
    if (result.outcome == ExecOutcome::kOk) {
      log_.Info(message, fields);
    } else {
      log_.Error(message, fields);
    }
  }

  Status Journal(const JournalRecord& record) {
    Status appended = journal_.Append(record);
    if (appended) ++state_.journal_records;
    return appended;
  }

  Status Persist() {
    dirty_ = false;
    state_.verifies.clear();
    for (const auto& [id, verify] : verifies_) {
      PersistedVerify saved;
      saved.rule = verify.trigger.rule;
      saved.action = verify.action;
      saved.incident = verify.trigger.incident;
      saved.grade = std::string(GradeName(verify.trigger.grade));
      saved.previous_grade = verify.trigger.previous;
      saved.reason = verify.trigger.reason;
      saved.service = verify.trigger.service;
      saved.summary = verify.trigger.summary;
      saved.escalate = verify.trigger.remaining.empty() ? "" : verify.trigger.remaining.front();
      saved.verify = verify.verify;
      saved.finished = verify.finished;
      saved.detected_at = verify.trigger.detected_at;
      state_.verifies.push_back(std::move(saved));
    }
    state_.breakers = planner_.BreakerStates();
    state_.last_runs = planner_.LastRuns();
    return store_.Save(state_);
  }

  sd_event* event_;
  EventLog& log_;
  const Clock& clock_;
  RuntimeObserver& observer_;
  bool force_dry_run_;
  bool config_dry_run_ = false;
  bool dirty_ = false;  // state_ has changes state.json does not have yet
  StateStore store_;
  ActionJournal journal_;
  std::string journal_path_;
  ExecRunner runner_;
  HttpActionRunner http_;
  SystemdActionRunner systemd_;
  ActionPlanner planner_;
  std::map<uint64_t, PendingVerify> verifies_;
  uint64_t next_verify_id_ = 1;
  // Fleet breakers by (internal) name, and what this daemon calls itself to them.
  std::map<std::string, std::unique_ptr<FleetBreakerClient>> fleet_;
  std::map<std::string, bool> fleet_reachable_;  // by breaker name as shown
  std::string node_name_;
  int fleet_pending_ = 0;  // decisions waiting for a fleet verdict
  sd_event_source* fleet_refresh_ = nullptr;
  // The dependency holding each rule whose latest evaluation was held (rules that were
  // not are absent): an escalation is suppressed while a dependency is.
  std::map<std::string, std::string> held_by_;
  // Rules whose incident was restored at start and not yet decided by fresh data.
  std::set<std::string> restored_incidents_;
  PersistedState state_;
  std::map<std::string, ActionConfig> actions_;

  friend class Responder;
};

}  // namespace

Result<std::unique_ptr<Responder>> Responder::Create(sd_event* event, ProbeContext& probes,
                                                     const Config& config, bool force_dry_run,
                                                     EventLog& log, const Clock& clock,
                                                     RuntimeObserver& observer) {
  auto store = StateStore::Open(config.daemon.state_dir);
  if (!store) return Fail(store.error().message);
  const std::string journal_path =
      (std::filesystem::path(config.daemon.state_dir) / "actions.jsonl").string();
  auto journal = ActionJournal::Open(journal_path);
  if (!journal) return Fail(journal.error().message);
  auto responder = std::make_unique<ResponderImpl>(
      event, probes, force_dry_run, log, clock, observer, std::move(*store), std::move(*journal));
  responder->journal_path_ = journal_path;
  if (Status loaded = responder->Load(config); !loaded) return Fail(loaded.error().message);
  return std::unique_ptr<Responder>(std::move(responder));
}

}  // namespace rollguard
