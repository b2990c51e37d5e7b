#include "daemon/alertmanager_format.h"

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace rollguard {
namespace {

using nlohmann::json;

std::string Severity(Grade grade) {
  if (!IsWorseThan(Grade::kCritical, grade)) return "critical";
  if (grade == Grade::kWarning) return "warning";
  return "info";
}

// The labels of rule `n.rule` at `grade`: the rule's labels may set severity and
// instance, never the identity (alertname, rule, grade).
LabelSet RuleLabels(const Notification& n, Grade grade) {
  LabelSet labels = {{"severity", Severity(grade)}};
  if (!n.host.empty()) labels["instance"] = n.host;
  for (const auto& [key, value] : n.labels) labels[key] = value;
  labels["alertname"] = n.rule;
  labels["rule"] = n.rule;
  labels["grade"] = std::string(GradeName(grade));
  return labels;
}

LabelSet Annotations(const Notification& n, const std::string& summary) {
  std::string description;
  for (const auto& [heading, text] : NotificationFacts(n)) {
    if (heading == "Summary" || heading == "Labels") continue;
    description += (description.empty() ? "" : "\n") + heading + ": " + text;
  }
  return {{"summary", summary}, {"description", description}};
}

std::string Time(TimePoint t) { return FormatIso8601(t); }

}  // namespace

std::string Fingerprint(const LabelSet& labels) {
  uint64_t hash = 14695981039346656037ULL;  // FNV-1a 64 offset basis
  auto add = [&hash](std::string_view bytes) {
    for (unsigned char c : bytes) {
      hash ^= c;
      hash *= 1099511628211ULL;
    }
  };
  for (const auto& [name, value] : labels) {  // std::map: sorted by name
    add(name);
    add("\xff");
    add(value);
    add("\xff");
  }
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash));  // NOLINT
  return buffer;
}

std::vector<Alert> AlertsFor(const Notification& n, const std::string& generator_url) {
  std::vector<Alert> alerts;
  const std::string title = NotificationTitle(n);
  const std::string summary = n.summary.empty() ? title : n.summary;
  auto make = [&](LabelSet labels, TimePoint starts, std::optional<TimePoint> ends) {
    Alert alert;
    alert.labels = std::move(labels);
    alert.annotations = Annotations(n, summary);
    alert.annotations["title"] = title;
    alert.starts_at = starts;
    alert.ends_at = ends;
    alert.generator_url = generator_url;
    alerts.push_back(std::move(alert));
  };
  switch (n.kind) {
    case NotificationKind::kGradeChanged:
    case NotificationKind::kResolved:
      if (n.previous_alerting && n.previous_known && n.previous != n.grade) {
        make(RuleLabels(n, n.previous), n.previous_since, n.time);
      }
      if (n.alerting) make(RuleLabels(n, n.grade), n.grade_since, std::nullopt);
      break;
    case NotificationKind::kReminder:
    case NotificationKind::kStale:
      make(RuleLabels(n, n.grade), n.grade_since, std::nullopt);
      break;
    case NotificationKind::kActionDecided:
    case NotificationKind::kActionFinished: {
      LabelSet labels = RuleLabels(n, n.grade);
      labels["alertname"] = "RollguardAction";
      if (!n.actions.empty()) {
        const ActionNote& a = n.actions.front();
        labels["action"] = a.action;
        if (n.kind == NotificationKind::kActionFinished) {
          labels["result"] = a.result;
          if (a.result != "ok") labels["severity"] = "critical";
        } else {
          labels["decision"] = a.decision;
        }
      }
      make(std::move(labels), n.time, n.time + kEventLifetime);
      break;
    }
    case NotificationKind::kVerifyFailed: {
      LabelSet labels = RuleLabels(n, n.grade);
      labels["alertname"] = "RollguardVerifyFailed";
      labels["severity"] = "critical";
      make(std::move(labels), n.time, n.time + kEventLifetime);
      break;
    }
    case NotificationKind::kBreakerOpened:
    case NotificationKind::kBreakerClosed: {
      LabelSet labels = {{"alertname", "RollguardBreakerOpen"}, {"severity", "warning"}};
      if (!n.breakers.empty()) labels["breaker"] = n.breakers.front().name;
      if (!n.host.empty()) labels["instance"] = n.host;
      if (n.kind == NotificationKind::kBreakerOpened) {
        make(std::move(labels), n.time, std::nullopt);
      } else {
        make(std::move(labels), n.previous_since, n.time);
      }
      break;
    }
    case NotificationKind::kReloadFailed:
    case NotificationKind::kReloadRecovered: {
      LabelSet labels = {{"alertname", "RollguardConfigReloadFailed"}, {"severity", "warning"}};
      if (!n.host.empty()) labels["instance"] = n.host;
      if (n.kind == NotificationKind::kReloadFailed) {
        make(std::move(labels), n.previous_since, std::nullopt);
      } else {
        make(std::move(labels), n.previous_since, n.time);
      }
      break;
    }
  }
  return alerts;
}

std::string WebhookDocument(const std::string& receiver, const std::vector<Alert>& alerts,
                            const std::string& external_url, TimePoint now) {
  json list = json::array();
  bool any_firing = false;
  for (const Alert& alert : alerts) {
    const bool resolved = alert.ends_at && *alert.ends_at <= now;
    any_firing = any_firing || !resolved;
    list.push_back({{"status", resolved ? "resolved" : "firing"},
                    {"labels", alert.labels},
                    {"annotations", alert.annotations},
                    {"startsAt", Time(alert.starts_at)},
                    {"endsAt", alert.ends_at ? Time(*alert.ends_at) : "0001-01-01T00:00:00Z"},
                    {"generatorURL", alert.generator_url},
                    {"fingerprint", Fingerprint(alert.labels)}});
  }
  // Labels (and annotations) every alert carries with the same value.
  auto common = [&alerts](auto member) {
    LabelSet shared;
    if (alerts.empty()) return shared;
    shared = alerts.front().*member;
    for (const Alert& alert : alerts) {
      for (auto it = shared.begin(); it != shared.end();) {
        auto found = (alert.*member).find(it->first);
        if (found == (alert.*member).end() || found->second != it->second) {
          it = shared.erase(it);
        } else {
          ++it;
        }
      }
    }
    return shared;
  };
  const LabelSet common_labels = common(&Alert::labels);
  LabelSet group_labels;
  for (const char* key : {"alertname", "rule", "breaker"}) {
    if (auto it = common_labels.find(key); it != common_labels.end()) group_labels.insert(*it);
  }
  std::string group_key = "{}:{";
  bool first = true;
  for (const auto& [key, value] : group_labels) {
    group_key += (first ? "" : ", ") + key + "=" + json(value).dump();
    first = false;
  }
  group_key += "}";
  json document = {{"version", "4"},
                   {"groupKey", group_key},
                   {"truncatedAlerts", 0},
                   {"status", any_firing ? "firing" : "resolved"},
                   {"receiver", receiver},
                   {"groupLabels", group_labels},
                   {"commonLabels", common_labels},
                   {"commonAnnotations", common(&Alert::annotations)},
                   {"externalURL", external_url},
                   {"alerts", list}};
  return document.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string AlertmanagerApiPayload(const std::vector<Alert>& alerts, TimePoint firing_until) {
  json list = json::array();
  for (const Alert& alert : alerts) {
    json item = {{"labels", alert.labels},
                 {"annotations", alert.annotations},
                 {"startsAt", Time(alert.starts_at)},
                 {"endsAt", Time(alert.ends_at ? *alert.ends_at : firing_until)}};
    if (!alert.generator_url.empty()) item["generatorURL"] = alert.generator_url;
    list.push_back(std::move(item));
  }
  return list.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace rollguard
