// Alertmanager payloads: pure functions of Notifications.
//
// rollguard speaks Alertmanager's two public formats, so existing receivers and routes
// keep working:
//   - the webhook document (version "4") that Alertmanager itself POSTs to webhook
//     receivers (`type = webhook`);
//   - the alert list POSTed to Alertmanager's /api/v2/alerts (`type = alertmanager`).
//
// Alerts rollguard raises (labels; annotations summary and description always):
//   rule grade   alertname=<rule>, rule, grade, severity, instance, + the rule's labels.
//                One alert per grade: entering critical from warning resolves the
//                warning alert and fires the critical one. Firing until resolved.
//   action       alertname=RollguardAction, rule, action, decision (or result), severity,
//                instance, + the rule's labels. One-shot: ends kEventLifetime after it.
//   verify       alertname=RollguardVerifyFailed, rule, severity=critical, ... One-shot.
//   breaker      alertname=RollguardBreakerOpen, breaker, severity=warning, instance.
//                Firing while open, resolved when it closes.
//   reload       alertname=RollguardConfigReloadFailed, severity=warning, instance.
//                Firing until a configuration applies again.
// severity: failure and critical -> "critical", warning -> "warning", better -> "info";
// a rule label `severity` or `instance` overrides these; alertname, rule and grade
// cannot be overridden.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/time.h"
#include "daemon/notification.h"

namespace rollguard {

using LabelSet = std::map<std::string, std::string>;

struct Alert {
  LabelSet labels;
  LabelSet annotations;
  TimePoint starts_at;
  // Set for resolved alerts (<= now) and one-shot events (in the future); unset while a
  // rule or breaker alert fires with no known end.
  std::optional<TimePoint> ends_at;
  std::string generator_url;
};

// How long a one-shot event (action, verify) stays active in Alertmanager.
inline constexpr Duration kEventLifetime = std::chrono::hours(1);

// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and values,
// each followed by the 0xff separator, as 16 lowercase hex digits. Same labels, same
// fingerprint, on every rollguard and in Alertmanager's own API.
std::string Fingerprint(const LabelSet& labels);

// The alerts a notification touches, resolved ones included (ends_at = its time).
// Reminders and stale notices repeat the firing alert with fresh annotations;
// kReloadRecovered resolves the reload alert. `generator_url` goes in every alert.
std::vector<Alert> AlertsFor(const Notification& notification, const std::string& generator_url);

// Alertmanager's webhook document, version "4", for `alerts` as seen at `now`:
// receiver = the notifier name, status firing when any alert fires (else resolved),
// groupLabels = the labels every alert shares among alertname, rule and breaker,
// commonLabels / commonAnnotations = those all alerts share, groupKey
// "{}:{alertname=\"api\", rule=\"api\"}", truncatedAlerts 0. A firing alert without an
// end has endsAt "0001-01-01T00:00:00Z", as Alertmanager sends it.
std::string WebhookDocument(const std::string& receiver, const std::vector<Alert>& alerts,
                            const std::string& external_url, TimePoint now);

// The body for POST /api/v2/alerts: every alert with startsAt, endsAt, labels,
// annotations, generatorURL. An alert without an end gets `firing_until`, so
// Alertmanager resolves it by itself should rollguard stop re-sending.
std::string AlertmanagerApiPayload(const std::vector<Alert>& alerts, TimePoint firing_until);

}  // namespace rollguard
