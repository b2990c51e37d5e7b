// Notifiers (spec §9): who hears what, and the observer that sends it.
//
// NotificationRouter is the pure part, with time as a value: it watches what the
// runtime reports and decides, per [notifier NAME], which notifications to send:
//   - a rule's grade change to a grade at or above the notifier's min_grade, and the
//     resolution when it goes back below (a rule's `notify` names its notifiers; empty
//     means all). The first grade after start counts as a change from "none";
//   - a reminder every `repeat` while a rule stays at or above min_grade (slack and
//     webhook; Alertmanager repeats by itself);
//   - a notice when a rule at or above min_grade loses its fresh data (stale);
//   - action decisions: those taken when a rule enters a grade are told in that grade
//     change's message ("what rollguard did"); otherwise each decision is its own
//     message to the rule's notifiers. Every suppressed decision reaches EVERY
//     notifier, whatever its min_grade or the rule's `notify` (spec §5);
//   - executed actions' results (ok, failed, timeout) to the rule's notifiers;
//   - breakers opening and closing, a reload rejected and the next config applied
//     after one, to every notifier.
// Messages name the dependency a rule is held by, its staleness, its labels, the probe
// values behind its grade, and the budget left in the breakers its actions use.
//
// NotifierObserver plugs the router into the runtime (RuntimeObserver) and delivers
// with one NotificationSender per notifier on the loop: nothing here ever blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"
#include "daemon/alertmanager_format.h"
#include "daemon/event_log.h"
#include "daemon/notification.h"
#include "daemon/notification_queue.h"
#include "daemon/notifier_config.h"
#include "daemon/observer.h"

typedef struct sd_event sd_event;  // NOLINT: matches <systemd/sd-event.h>

namespace rollguard {

class CurlMulti;

// This machine's host name (gethostname), "" when unknown: the `instance` of alerts.
std::string LocalHostName();

// One notification for one notifier.
struct Delivery {
  std::string notifier;
  Notification notification;
};

class NotificationRouter {
 public:
  // `host` goes into every notification (Slack context line, alert label `instance`).
  explicit NotificationRouter(std::string host = "") : host_(std::move(host)) {}

  // Takes a (re)loaded configuration: its notifiers and rules. State of notifiers and
  // rules that keep their names survives. Returns resolutions for alerting rules a
  // reload removed, and "reload recovered" after a failed reload.
  std::vector<Delivery> Configure(const Config& config, TimePoint now);

  std::vector<Delivery> OnRuleEvaluated(const RuleSet& rules, size_t index,
                                        const RuleOutcome& outcome, TimePoint now);
  // Decisions are held until their rule's evaluation (which follows at once when a rule
  // enters a grade), so its grade-change message can tell them; any still held 2s
  // later go out on their own from OnBreakers. Returns nothing itself.
  std::vector<Delivery> OnActionDecided(const JournalRecord& record, const PlannedAction& plan);
  std::vector<Delivery> OnActionFinished(const JournalRecord& record);
  std::vector<Delivery> OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now);
  std::vector<Delivery> OnReloadFailed(const std::string& error, TimePoint now);
  // "Rollback did not help": to the rule's notifiers, whatever their min_grade.
  std::vector<Delivery> OnVerifyFailed(const VerifyFailure& failure);

  const std::vector<NotifierConfig>& notifiers() const { return notifiers_; }

 private:
  // A rule's state from its first evaluation on: what its messages tell of its grade.
  struct RuleState {
    Grade grade = Grade::kExcellent;
    bool stale = true;  // rules start stale until their probes report
    bool seen = false;  // evaluated at least once; until then nothing else here holds
    TimePoint grade_since{};
    TimePoint previous_since{};
  };
  // One rule of the configured RuleSet, at its index there. Labels and notify are read
  // from the RuleSet's definition rather than copied: with 10,000 rules, copies in two
  // name-keyed maps held 2.72 MB of heap (heaptrack); slots of 32 bytes hold 0.32 MB.
  struct RuleSlot {
    RuleState state;
    uint32_t breakers = 0;  // the index of its breaker list in breaker_lists_
  };
  // What a message needs of a rule: any part is null for a rule the configuration lacks,
  // and `state` for a rule not evaluated yet.
  struct RuleView {
    const RuleDefinition* definition = nullptr;
    const std::vector<std::string>* breakers = nullptr;
    const RuleState* state = nullptr;
  };

  RuleView View(size_t index) const;  // REQUIRES: index < slots_.size()
  RuleView View(std::string_view rule) const;
  static bool Targets(const RuleDefinition& rule, const std::string& notifier);
  Notification Base(NotificationKind kind, TimePoint now) const;
  Notification RuleBase(NotificationKind kind, const std::string& rule, const RuleView& view,
                        TimePoint now) const;
  std::vector<BreakerNote> Budgets(const std::vector<std::string>* breakers) const;
  void AddActionDeliveries(const ActionNote& note, NotificationKind kind,
                           const std::set<std::string>& already_told, std::vector<Delivery>* out);

  std::string host_;
  std::vector<NotifierConfig> notifiers_;
  // The RuleSet of the last Configure (held, so its address names no other RuleSet and
  // its definitions stay valid) and a slot per rule, by index. Evaluations of any other
  // RuleSet, and records that name a rule, find the slot through indexed_rules_->Find.
  // A reload carries the state of each rule that keeps its name into the new slots.
  std::shared_ptr<const RuleSet> indexed_rules_;
  std::vector<RuleSlot> slots_;
  // The distinct lists of breakers rules' actions use ("default" for the unnamed one),
  // sorted: a handful per configuration, shared by index rather than copied per rule.
  std::vector<std::vector<std::string>> breaker_lists_;
  // notifier -> rule -> when that notifier last heard about that rule while alerting.
  std::map<std::string, std::map<std::string, TimePoint>> last_sent_;
  std::map<std::string, std::vector<ActionNote>> pending_;  // rule -> decisions held
  std::map<std::string, BreakerReport> breakers_;           // the latest reports
  std::map<std::string, TimePoint> breaker_opened_;
  std::optional<TimePoint> reload_failed_since_;
};

// Renders `delivery` for a notifier of type slack or webhook: the body to POST.
// REQUIRES: notifier.type != kAlertmanager (its alerts need state: NotifierObserver).
std::string RenderMessage(const NotifierConfig& notifier, const Notification& notification);

class NotifierObserver final : public RuntimeObserver {
 public:
  using ResultHook = NotificationSender::ResultHook;

  // `event`, `log` and `clock` must outlive the observer. Posts go through a CurlMulti of
  // its own on `event`, so notifier connections never compete with probes'.
  NotifierObserver(sd_event* event, EventLog& log, const Clock& clock, std::string host);
  ~NotifierObserver() override;

  // Hears every final delivery result (metrics: rollguard_notifications_total).
  void SetResultHook(ResultHook hook) { hook_ = std::move(hook); }

  void OnConfigApplied(const Config& config, TimePoint now) override;
  void OnReloadFailed(const std::string& error, TimePoint now) override;
  void OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                       TimePoint now) override;
  void OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                       TimePoint detected_at) override;
  void OnActionFinished(const JournalRecord& record) override;
  void OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now) override;
  void OnVerifyFailed(const VerifyFailure& failure) override;

  // Counts of final results for `notifier` (zeros when unknown).
  struct Counts {
    uint64_t sent = 0;
    uint64_t failed = 0;
    uint64_t dropped = 0;
  };
  Counts counts(const std::string& notifier) const;

 private:
  struct Channel {
    NotifierConfig config;
    std::unique_ptr<NotificationSender> sender;
    std::map<std::string, Alert> firing;  // alertmanager: fingerprint -> alert kept alive
    TimePoint last_resend{};
  };

  void Dispatch(std::vector<Delivery> deliveries, TimePoint now);
  void ResendFiring(Channel& channel, TimePoint now, bool force);

  // The notifiers' own libcurl multi handle, made when the first notifier is configured:
  // libcurl's global initialisation brings up OpenSSL (~2 MiB resident).
  CurlMulti& Curl();

  EventLog& log_;
  const Clock& clock_;
  sd_event* event_;
  std::unique_ptr<CurlMulti> curl_;
  NotificationRouter router_;
  std::map<std::string, Channel> channels_;
  std::map<std::string, Counts> counts_;
  ResultHook hook_;
};

}  // namespace rollguard
