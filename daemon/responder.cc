#include "daemon/responder.h"

#include <deque>
#include <filesystem>

#include "daemon/action_journal.h"
#include "daemon/action_planner.h"
#include "daemon/state_store.h"
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

std::string SecondsText(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3fs", seconds);
  return buffer;
}

class ResponderImpl final : public Responder {
 public:
  ResponderImpl(sd_event* event, bool force_dry_run, EventLog& log, const Clock& clock,
                RuntimeObserver& observer, StateStore store, ActionJournal journal)
      : log_(log),
        clock_(clock),
        observer_(observer),
        force_dry_run_(force_dry_run),
        store_(std::move(store)),
        journal_(std::move(journal)),
        runner_(event) {}

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
      if (record.phase != JournalPhase::kDecided || record.decision != "executed") continue;
      // Decided and journaled, but killed before state.json caught up: count it.
      planner_.ReplayExecuted(record.action, BreakerName(record.breaker), record.time);
      if (auto grade = ParseGrade(record.grade)) {
        state_.rules[record.rule] = PersistedRule{std::string(GradeName(*grade)), record.time};
      }
      ++replayed;
    }
    state_.journal_records = records->size();
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
    if (!outcome.changed) return;
    const RuleDefinition& rule = rules.definition(index);
    const std::string from = PreviousGradeName(outcome);
    const std::string to(GradeName(outcome.grade));
    const LogFields fields = {{"ROLLGUARD_RULE", rule.name},
                              {"ROLLGUARD_GRADE", to},
                              {"ROLLGUARD_PREVIOUS_GRADE", from}};
    const std::string message = "rule " + rule.name + ": " + from + " -> " + to + " (" +
                                outcome.reason + ")" + (outcome.stale ? " [stale]" : "");
    if (IsWorseThan(outcome.grade, outcome.previous)) {
      log_.Warning(message, fields);
    } else {
      log_.Info(message, fields);
    }
    state_.rules[rule.name] = PersistedRule{to, now};
    TrackIncident(rule.name, outcome, now);

    std::string why_not;
    std::vector<std::string> names = ActionsToConsider(rule, outcome, &why_not);
    if (!why_not.empty()) log_.Warning("rule " + rule.name + ": no action: " + why_not, fields);
    if (!names.empty()) {
      RunNext(Trigger{rule.name, outcome.grade, from, outcome.reason, outcome.held_by,
                      Incident(rule.name), {names.begin(), names.end()}, outcome.condition_since});
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

  int RunningActions() const override { return runner_.Running(); }

  std::vector<BreakerReport> Breakers(TimePoint now) const override {
    std::vector<BreakerReport> reports;
    for (const std::string& name : planner_.BreakerNames()) {
      const Breaker* breaker = planner_.FindBreaker(name);
      if (breaker == nullptr) continue;
      BreakerReport report;
      report.name = JournalBreakerName(name);
      report.open = breaker->IsOpen(now);
      report.admitted_in_window = breaker->AdmittedInWindow(now);
      report.max_actions = breaker->policy().max_actions;
      report.open_until = breaker->OpenUntil(now);
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
  };

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
        log_.Info("incident " + it->second.id + " resolved", {{"ROLLGUARD_RULE", rule}});
        state_.incidents.erase(it);
      }
    } else if (is) {
      auto it = state_.incidents.find(rule);
      if (it != state_.incidents.end()) it->second.grade = std::string(GradeName(outcome.grade));
    }
  }

  // Decides the next action of `trigger` and starts it; the one after it starts when it
  // finishes, so the order the rule wrote is the order they run in.
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
      const PlannedAction plan = planner_.Decide(action, context);

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
      record.breaker = JournalBreakerName(action.breaker);
      record.open_until = plan.open_until;
      const Status journaled = Journal(record);
      observer_.OnActionDecided(record, plan, trigger.detected_at);
      if (plan.decision == ActionDecision::kExecuted) observer_.OnBreakers(Breakers(now), now);
      const LogFields fields = {{"ROLLGUARD_RULE", trigger.rule},
                                {"ROLLGUARD_ACTION", action.name},
                                {"ROLLGUARD_GRADE", record.grade},
                                {"ROLLGUARD_DECISION", record.decision}};
      if (plan.decision != ActionDecision::kExecuted) {
        log_.Warning("action " + action.name + " for rule " + trigger.rule + ": " +
                         record.decision + " (" + plan.why + ")",
                     fields);
        continue;
      }
      if (!journaled) {
        // An action that cannot be journaled does not run: the journal is what stops a
        // restart from running it twice.
        log_.Error("action " + action.name + " not run: " + journaled.error().message, fields);
        continue;
      }
      if (auto incident = state_.incidents.find(trigger.rule); incident != state_.incidents.end()) {
        incident->second.acted = true;
        incident->second.actions_run.push_back(action.name);
      }
      if (Status saved = Persist(); !saved) log_.Error(saved.error().message);
      log_.Warning("action " + action.name + " for rule " + trigger.rule + ": executing (" +
                       plan.why + ")",
                   fields);
      Start(action, record, std::move(trigger));
      return;
    }
  }

  void Start(const ActionConfig& action, const JournalRecord& decided, Trigger trigger) {
    ExecRequest request;
    request.argv = action.argv;
    request.timeout = action.timeout;
    request.env = {"ROLLGUARD_RULE=" + trigger.rule,
                   "ROLLGUARD_GRADE=" + decided.grade,
                   "ROLLGUARD_PREVIOUS_GRADE=" + decided.previous_grade,
                   "ROLLGUARD_REASON=" + trigger.reason,
                   "ROLLGUARD_ACTION=" + action.name,
                   "ROLLGUARD_INCIDENT=" + trigger.incident,
                   "ROLLGUARD_DRY_RUN=false"};
    const std::string action_name = action.name;
    const std::string rule_name = trigger.rule;
    request.on_output_line = [this, action_name, rule_name](OutputStream, std::string_view line) {
      log_.Info(action_name + ": " + std::string(line),
                {{"ROLLGUARD_ACTION", action_name}, {"ROLLGUARD_RULE", rule_name}});
    };
    runner_.Start(std::move(request), [this, decided, trigger = std::move(trigger)](
                                          const ExecResult& result) mutable {
      Finished(decided, result);
      RunNext(std::move(trigger));
    });
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
    state_.breakers = planner_.BreakerStates();
    state_.last_runs = planner_.LastRuns();
    return store_.Save(state_);
  }

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
  ActionPlanner planner_;
  PersistedState state_;
  std::map<std::string, ActionConfig> actions_;

  friend class Responder;
};

}  // namespace

Result<std::unique_ptr<Responder>> Responder::Create(sd_event* event, const Config& config,
                                                     bool force_dry_run, EventLog& log,
                                                     const Clock& clock,
                                                     RuntimeObserver& observer) {
  auto store = StateStore::Open(config.daemon.state_dir);
  if (!store) return Fail(store.error().message);
  const std::string journal_path =
      (std::filesystem::path(config.daemon.state_dir) / "actions.jsonl").string();
  auto journal = ActionJournal::Open(journal_path);
  if (!journal) return Fail(journal.error().message);
  auto responder = std::make_unique<ResponderImpl>(event, force_dry_run, log, clock, observer,
                                                   std::move(*store), std::move(*journal));
  responder->journal_path_ = journal_path;
  if (Status loaded = responder->Load(config); !loaded) return Fail(loaded.error().message);
  return std::unique_ptr<Responder>(std::move(responder));
}

}  // namespace rollguard
