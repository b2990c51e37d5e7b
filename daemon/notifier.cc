#include "daemon/notifier.h"

#include <unistd.h>

#include <algorithm>

#include "daemon/slack_format.h"
#include "probes/curl_multi.h"

namespace rollguard {
namespace {

// Decisions not told with a grade change go out on their own after this long.
constexpr Duration kPendingHold = std::chrono::seconds(2);
// Alertmanager forgets a firing alert this many resend intervals after the last post,
// like Prometheus does (4 x its resend delay).
constexpr int kFiringLifetimeResends = 4;

std::string BreakerName(const std::string& name) { return name.empty() ? "default" : name; }

bool IsSuppressed(const std::string& decision) { return decision.rfind("suppressed_", 0) == 0; }

ActionNote NoteFrom(const JournalRecord& record, const std::string& why) {
  ActionNote note;
  note.time = record.time;
  note.rule = record.rule;
  note.action = record.action;
  note.grade = record.grade;
  note.previous_grade = record.previous_grade;
  note.decision = record.decision;
  note.why = why;
  note.incident = record.incident;
  note.breaker = record.breaker;
  note.open_until = record.open_until;
  note.result = record.result;
  note.exit_code = record.exit_code;
  note.signal = record.signal;
  note.duration_seconds = record.duration_seconds;
  note.error = record.error;
  return note;
}

}  // namespace

std::string LocalHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// ---------------------------------------------------------------------------------------
// NotificationRouter

bool NotificationRouter::Targets(const RuleDefinition& rule, const std::string& notifier) {
  return rule.notify.empty() ||
         std::find(rule.notify.begin(), rule.notify.end(), notifier) != rule.notify.end();
}

NotificationRouter::RuleView NotificationRouter::View(size_t index) const {
  const RuleSlot& slot = slots_[index];
  RuleView view;
  view.definition = &indexed_rules_->definition(index);
  view.breakers = &breaker_lists_[slot.breakers];
  if (slot.state.seen) view.state = &slot.state;
  return view;
}

NotificationRouter::RuleView NotificationRouter::View(std::string_view rule) const {
  if (!indexed_rules_) return {};
  const std::optional<size_t> index = indexed_rules_->Find(rule);
  return index ? View(*index) : RuleView{};
}

Notification NotificationRouter::Base(NotificationKind kind, TimePoint now) const {
  Notification n;
  n.kind = kind;
  n.time = now;
  n.host = host_;
  return n;
}

Notification NotificationRouter::RuleBase(NotificationKind kind, const std::string& rule,
                                          const RuleView& view, TimePoint now) const {
  Notification n = Base(kind, now);
  n.rule = rule;
  if (view.definition != nullptr) n.labels = view.definition->labels;
  if (const RuleState* state = view.state) {
    n.grade = state->grade;
    n.previous = state->grade;
    n.grade_since = state->grade_since;
    n.previous_since = state->previous_since;
    n.stale = state->stale;
  }
  n.breakers = Budgets(view.breakers);
  return n;
}

std::vector<BreakerNote> NotificationRouter::Budgets(
    const std::vector<std::string>* breakers) const {
  std::vector<BreakerNote> notes;
  if (breakers == nullptr) return notes;
  for (const std::string& name : *breakers) {
    auto it = breakers_.find(name);
    if (it == breakers_.end()) continue;
    const BreakerReport& r = it->second;
    notes.push_back(BreakerNote{r.name, r.open, r.admitted_in_window, r.max_actions, r.open_until});
  }
  return notes;
}

std::vector<Delivery> NotificationRouter::Configure(const Config& config, TimePoint now) {
  std::vector<Delivery> out;
  const RuleSet* configured = config.rules.get();
  std::vector<RuleSlot> slots(configured != nullptr ? configured->size() : 0);
  std::vector<std::vector<std::string>> breaker_lists;
  std::map<std::vector<std::string>, uint32_t> list_index;  // breaker list -> its index
  for (size_t i = 0; i < slots.size(); ++i) {
    const RuleDefinition& rule = configured->definition(i);
    std::set<std::string> breakers;
    for (const auto& names : rule.actions_on) {
      for (const std::string& action_name : names) {
        if (const ActionConfig* action = config.FindAction(action_name)) {
          breakers.insert(BreakerName(action->breaker));
        }
      }
    }
    auto [list, added] =
        list_index.emplace(std::vector<std::string>(breakers.begin(), breakers.end()),
                           static_cast<uint32_t>(breaker_lists.size()));
    if (added) breaker_lists.push_back(list->first);
    slots[i].breakers = list->second;
    // A rule that keeps its name keeps its state.
    if (indexed_rules_) {
      if (const std::optional<size_t> old = indexed_rules_->Find(rule.name)) {
        slots[i].state = slots_[*old].state;
      }
    }
  }
  // Rules a reload removed while they were alerting: resolve them, or they would stay
  // open for ever in every receiver. Told to the old notifiers that still exist, rules in
  // name order.
  std::vector<size_t> removed;  // indices in the RuleSet configured until now
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].state.seen) continue;
    if (configured != nullptr && configured->Find(indexed_rules_->definition(i).name)) continue;
    removed.push_back(i);
  }
  std::sort(removed.begin(), removed.end(), [&](size_t a, size_t b) {
    return indexed_rules_->definition(a).name < indexed_rules_->definition(b).name;
  });
  for (size_t index : removed) {
    const RuleView old = View(index);
    const std::string& name = old.definition->name;
    const RuleState& state = *old.state;
    for (const NotifierConfig& notifier : config.notifiers) {
      if (!Targets(*old.definition, notifier.name)) continue;
      if (IsWorseThan(notifier.min_grade, state.grade)) continue;
      Notification n = RuleBase(NotificationKind::kResolved, name, old, now);
      n.previous = state.grade;
      n.previous_since = state.grade_since;
      n.grade = Grade::kExcellent;
      n.grade_since = now;
      n.previous_alerting = true;
      n.alerting = false;
      n.stale = false;
      n.reason = "the rule was removed from the configuration";
      out.push_back({notifier.name, std::move(n)});
    }
  }
  indexed_rules_ = config.rules;
  slots_ = std::move(slots);
  breaker_lists_ = std::move(breaker_lists);
  notifiers_ = config.notifiers;
  for (auto it = last_sent_.begin(); it != last_sent_.end();) {
    const bool kept = std::any_of(notifiers_.begin(), notifiers_.end(),
                                  [&](const NotifierConfig& n) { return n.name == it->first; });
    it = kept ? std::next(it) : last_sent_.erase(it);
  }
  if (reload_failed_since_) {
    for (const NotifierConfig& notifier : notifiers_) {
      Notification n = Base(NotificationKind::kReloadRecovered, now);
      n.previous_since = *reload_failed_since_;
      out.push_back({notifier.name, std::move(n)});
    }
    reload_failed_since_.reset();
  }
  return out;
}

std::vector<Delivery> NotificationRouter::OnRuleEvaluated(const RuleSet& rules, size_t index,
                                                          const RuleOutcome& outcome,
                                                          TimePoint now) {
  std::vector<Delivery> out;
  const RuleDefinition& definition = rules.definition(index);
  const std::string& name = definition.name;
  // The rule's slot: by index in the configured RuleSet, by name in any other.
  std::optional<size_t> slot = index;
  if (&rules != indexed_rules_.get()) {
    slot = indexed_rules_ ? indexed_rules_->Find(name) : std::nullopt;
  }
  if (!slot) return out;  // not (yet) configured
  const RuleDefinition& configured_rule = indexed_rules_->definition(*slot);

  RuleState& state = slots_[*slot].state;
  const bool was_stale = state.stale;
  if (!state.seen) {
    state.seen = true;
    const TimePoint since = rules.grade_since(index);
    state.grade_since = since == TimePoint{} ? now : since;
  }
  if (outcome.changed) {
    state.previous_since = state.grade_since;
    state.grade_since = now;
  }
  state.grade = outcome.grade;
  state.stale = outcome.stale;

  std::vector<ActionNote> pending;
  if (!pending_.empty()) {
    if (auto it = pending_.find(name); it != pending_.end()) {
      pending = std::move(it->second);
      pending_.erase(it);
    }
  }
  // Decisions of this grade entry are told with the grade change; others go alone.
  std::vector<ActionNote> folded;
  std::vector<ActionNote> alone;
  for (ActionNote& note : pending) {
    const bool same_entry = outcome.changed && note.grade == GradeName(outcome.grade);
    (same_entry ? folded : alone).push_back(std::move(note));
  }

  std::optional<std::string> summary;  // rendered once, only when something is sent
  auto render = [&]() -> const std::string& {
    if (!summary) summary = rules.RenderSummary(index, now);
    return *summary;
  };
  std::set<std::string> told_folded;  // notifiers whose grade message tells `folded`
  for (const NotifierConfig& notifier : notifiers_) {
    const bool alerting = !IsWorseThan(notifier.min_grade, outcome.grade);
    // Unchanged and below min_grade: nothing to send or remember, whoever is targeted.
    if (!outcome.changed && !alerting) continue;
    if (!Targets(configured_rule, notifier.name)) continue;
    const bool previous_alerting =
        outcome.previous_known && !IsWorseThan(notifier.min_grade, outcome.previous);
    auto& sent = last_sent_[notifier.name];
    std::optional<NotificationKind> kind;
    if (outcome.changed && alerting) {
      kind = NotificationKind::kGradeChanged;
    } else if (outcome.changed && previous_alerting) {
      kind = NotificationKind::kResolved;
    } else if (alerting && outcome.stale && !was_stale) {
      kind = NotificationKind::kStale;
    } else if (alerting) {
      auto last = sent.find(name);
      if (last == sent.end()) {
        // First sight of a rule already alerting (a restart resumed it): Slack and
        // webhook receivers heard of it before; Alertmanager must be told it fires.
        if (notifier.type == NotifierType::kAlertmanager) kind = NotificationKind::kReminder;
        sent[name] = now;
      } else if (notifier.type != NotifierType::kAlertmanager && notifier.repeat.count() > 0 &&
                 now - last->second >= notifier.repeat) {
        kind = NotificationKind::kReminder;
      }
    }
    if (!kind) continue;
    Notification n = RuleBase(*kind, name, View(*slot), now);
    n.grade = outcome.grade;
    n.previous = outcome.changed ? outcome.previous : outcome.grade;
    n.previous_known = outcome.changed ? outcome.previous_known : true;
    n.alerting = alerting;
    n.previous_alerting = outcome.changed ? previous_alerting : alerting;
    n.stale = outcome.stale;
    n.reason = outcome.reason;
    n.held_by = outcome.held_by;
    n.config_error = outcome.config_error;
    n.summary = render();
    if (*kind == NotificationKind::kGradeChanged || *kind == NotificationKind::kResolved) {
      n.actions = folded;
      told_folded.insert(notifier.name);
    }
    if (alerting) {
      sent[name] = now;
    } else {
      sent.erase(name);
    }
    out.push_back({notifier.name, std::move(n)});
  }
  for (const ActionNote& note : folded) {
    AddActionDeliveries(note, NotificationKind::kActionDecided, told_folded, &out);
  }
  for (const ActionNote& note : alone) {
    AddActionDeliveries(note, NotificationKind::kActionDecided, {}, &out);
  }
  return out;
}

void NotificationRouter::AddActionDeliveries(const ActionNote& note, NotificationKind kind,
                                             const std::set<std::string>& already_told,
                                             std::vector<Delivery>* out) {
  const RuleView rule = View(note.rule);
  const bool to_everyone = kind == NotificationKind::kActionDecided && IsSuppressed(note.decision);
  for (const NotifierConfig& notifier : notifiers_) {
    if (already_told.count(notifier.name) != 0) continue;
    if (!to_everyone && (rule.definition == nullptr || !Targets(*rule.definition, notifier.name))) {
      continue;
    }
    Notification n = RuleBase(kind, note.rule, rule, note.time);
    if (auto grade = ParseGrade(note.grade)) n.grade = *grade;
    n.alerting = true;
    n.actions = {note};
    out->push_back({notifier.name, std::move(n)});
  }
}

std::vector<Delivery> NotificationRouter::OnActionDecided(const JournalRecord& record,
                                                          const PlannedAction& plan) {
  pending_[record.rule].push_back(NoteFrom(record, plan.why));
  return {};
}

std::vector<Delivery> NotificationRouter::OnActionFinished(const JournalRecord& record) {
  std::vector<Delivery> out;
  AddActionDeliveries(NoteFrom(record, ""), NotificationKind::kActionFinished, {}, &out);
  return out;
}

std::vector<Delivery> NotificationRouter::OnBreakers(const std::vector<BreakerReport>& reports,
                                                     TimePoint now) {
  std::vector<Delivery> out;
  for (const BreakerReport& report : reports) {
    auto previous = breakers_.find(report.name);
    const bool was_open = previous != breakers_.end() && previous->second.open;
    breakers_[report.name] = report;
    if (report.open == was_open) continue;
    const NotificationKind kind =
        report.open ? NotificationKind::kBreakerOpened : NotificationKind::kBreakerClosed;
    if (report.open) breaker_opened_[report.name] = now;
    for (const NotifierConfig& notifier : notifiers_) {
      Notification n = Base(kind, now);
      n.breakers = {BreakerNote{report.name, report.open, report.admitted_in_window,
                                report.max_actions, report.open_until}};
      n.previous_since = breaker_opened_.count(report.name) ? breaker_opened_[report.name] : now;
      out.push_back({notifier.name, std::move(n)});
    }
  }
  // Decisions whose rule evaluation never came (e.g. the second action of a grade,
  // decided when the first finished): told on their own.
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto& notes = it->second;
    std::vector<ActionNote> due;
    for (auto note = notes.begin(); note != notes.end();) {
      if (now - note->time >= kPendingHold) {
        due.push_back(std::move(*note));
        note = notes.erase(note);
      } else {
        ++note;
      }
    }
    for (const ActionNote& note : due) {
      AddActionDeliveries(note, NotificationKind::kActionDecided, {}, &out);
    }
    it = notes.empty() ? pending_.erase(it) : std::next(it);
  }
  return out;
}

std::vector<Delivery> NotificationRouter::OnReloadFailed(const std::string& error, TimePoint now) {
  std::vector<Delivery> out;
  if (!reload_failed_since_) reload_failed_since_ = now;
  for (const NotifierConfig& notifier : notifiers_) {
    Notification n = Base(NotificationKind::kReloadFailed, now);
    n.error = error;
    n.previous_since = *reload_failed_since_;
    out.push_back({notifier.name, std::move(n)});
  }
  return out;
}

std::vector<Delivery> NotificationRouter::OnVerifyFailed(const VerifyFailure& failure) {
  std::vector<Delivery> out;
  const RuleView rule = View(failure.rule);
  for (const NotifierConfig& notifier : notifiers_) {
    if (rule.definition != nullptr && !Targets(*rule.definition, notifier.name)) continue;
    Notification n = RuleBase(NotificationKind::kVerifyFailed, failure.rule, rule, failure.now);
    if (auto grade = ParseGrade(failure.grade)) n.grade = *grade;
    n.alerting = true;
    n.error = failure.action + " finished at " + ClockTime(failure.action_finished) + "; " +
              FormatDuration(failure.verify) + " later " + failure.rule + " is still " +
              failure.grade +
              (failure.escalate.empty() ? ", and no escalate action is set"
                                        : ": escalating to " + failure.escalate);
    out.push_back({notifier.name, std::move(n)});
  }
  return out;
}

std::string RenderMessage(const NotifierConfig& notifier, const Notification& notification) {
  if (notifier.type == NotifierType::kSlack) return SlackPayload(notification);
  return WebhookDocument(notifier.name, AlertsFor(notification, notifier.external_url),
                         notifier.external_url, notification.time);
}

// ---------------------------------------------------------------------------------------
// NotifierObserver

NotifierObserver::NotifierObserver(sd_event* event, EventLog& log, const Clock& clock,
                                   std::string host)
    : log_(log), clock_(clock), event_(event), router_(std::move(host)) {}

NotifierObserver::~NotifierObserver() {
  channels_.clear();  // senders remove their transfers before the CurlMulti goes
  curl_.reset();
}

CurlMulti& NotifierObserver::Curl() {
  if (curl_ == nullptr) curl_ = std::make_unique<CurlMulti>(event_);
  return *curl_;
}

NotifierObserver::Counts NotifierObserver::counts(const std::string& notifier) const {
  auto it = counts_.find(notifier);
  return it == counts_.end() ? Counts{} : it->second;
}

void NotifierObserver::OnConfigApplied(const Config& config, TimePoint now) {
  std::vector<Delivery> deliveries = router_.Configure(config, now);
  std::map<std::string, Channel> channels;
  for (const NotifierConfig& notifier : config.notifiers) {
    SenderTarget target;
    target.url = notifier.url;
    if (notifier.type == NotifierType::kAlertmanager) {
      std::string base = notifier.url;
      while (!base.empty() && base.back() == '/') base.pop_back();
      const std::string path = "/api/v2/alerts";
      target.url = base.size() >= path.size() &&
                           base.compare(base.size() - path.size(), path.size(), path) == 0
                       ? base
                       : base + path;
    }
    target.timeout = notifier.timeout;
    target.policy.max_queue = notifier.max_queue;
    target.policy.max_tries = notifier.max_tries;
    auto existing = channels_.find(notifier.name);
    Channel channel;
    if (existing != channels_.end() && existing->second.config.type == notifier.type) {
      channel = std::move(existing->second);
      channel.sender->Reconfigure(target);
    } else {
      channel.sender = std::make_unique<NotificationSender>(
          Curl(), notifier.name, target, log_, clock_,
          [this](const std::string& name, const std::string& result) {
            Counts& c = counts_[name];
            if (result == "sent") ++c.sent;
            if (result == "failed") ++c.failed;
            if (result == "dropped") ++c.dropped;
            if (hook_) hook_(name, result);
          });
    }
    channel.config = notifier;
    channels.emplace(notifier.name, std::move(channel));
  }
  channels_ = std::move(channels);
  Dispatch(std::move(deliveries), now);
}

void NotifierObserver::OnReloadFailed(const std::string& error, TimePoint now) {
  Dispatch(router_.OnReloadFailed(error, now), now);
}

void NotifierObserver::OnRuleEvaluated(const RuleSet& rules, size_t index,
                                       const RuleOutcome& outcome, TimePoint now) {
  Dispatch(router_.OnRuleEvaluated(rules, index, outcome, now), now);
}

void NotifierObserver::OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                                       TimePoint /*detected_at*/) {
  Dispatch(router_.OnActionDecided(record, plan), record.time);
}

void NotifierObserver::OnActionFinished(const JournalRecord& record) {
  Dispatch(router_.OnActionFinished(record), record.time);
}

void NotifierObserver::OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now) {
  Dispatch(router_.OnBreakers(breakers, now), now);
  for (auto& [name, channel] : channels_) {
    if (channel.config.type == NotifierType::kAlertmanager) ResendFiring(channel, now, false);
  }
}

void NotifierObserver::OnVerifyFailed(const VerifyFailure& failure) {
  Dispatch(router_.OnVerifyFailed(failure), failure.now);
}

void NotifierObserver::Dispatch(std::vector<Delivery> deliveries, TimePoint now) {
  for (Delivery& delivery : deliveries) {
    auto it = channels_.find(delivery.notifier);
    if (it == channels_.end()) continue;
    Channel& channel = it->second;
    const Notification& n = delivery.notification;
    OutgoingMessage message;
    message.what = std::string(NotificationKindName(n.kind)) + (n.rule.empty() ? "" : " " + n.rule);
    if (channel.config.type != NotifierType::kAlertmanager) {
      message.body = RenderMessage(channel.config, n);
      channel.sender->Send(std::move(message));
      continue;
    }
    std::vector<Alert> alerts = AlertsFor(n, channel.config.external_url);
    for (const Alert& alert : alerts) {
      const std::string fingerprint = Fingerprint(alert.labels);
      if (!alert.ends_at) {
        channel.firing[fingerprint] = alert;
      } else if (*alert.ends_at <= now) {
        channel.firing.erase(fingerprint);
      }
    }
    message.body =
        AlertmanagerApiPayload(alerts, now + channel.config.resend * kFiringLifetimeResends);
    channel.sender->Send(std::move(message));
  }
}

void NotifierObserver::ResendFiring(Channel& channel, TimePoint now, bool force) {
  if (channel.firing.empty()) return;
  if (!force && now - channel.last_resend < channel.config.resend) return;
  channel.last_resend = now;
  std::vector<Alert> alerts;
  for (const auto& [fingerprint, alert] : channel.firing) alerts.push_back(alert);
  OutgoingMessage message;
  message.what = "firing alerts (" + std::to_string(alerts.size()) + ")";
  message.coalesce_key = "keep-alive";
  message.body =
      AlertmanagerApiPayload(alerts, now + channel.config.resend * kFiringLifetimeResends);
  channel.sender->Send(std::move(message));
}

}  // namespace rollguard
