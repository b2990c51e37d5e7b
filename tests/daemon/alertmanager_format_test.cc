#include "daemon/alertmanager_format.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

using namespace rollguard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const TimePoint kNow = FromMillis(1'700'000'000'000);

Notification ApiChange(Grade previous, Grade grade) {
  Notification n;
  n.kind = NotificationKind::kGradeChanged;
  n.time = kNow;
  n.host = "web-1";
  n.rule = "api";
  n.previous = previous;
  n.grade = grade;
  n.previous_since = kNow - 10min;
  n.grade_since = kNow;
  n.alerting = true;
  n.previous_alerting = true;
  n.summary = "API 5xx ratio 12%";
  n.reason = "api_errors > 10% (api_errors=0.12)";
  n.labels = {{"team", "payments"}, {"alertname", "evil"}};
  return n;
}

}  // namespace

TEST_CASE("fingerprints match Alertmanager's FNV-1a over sorted labels", "[alertmanager]") {
  CHECK(Fingerprint({}) == "cbf29ce484222325");  // FNV-1a 64 offset basis: no labels
  // The same labels in any insertion order have the same fingerprint; any change differs.
  const std::string a = Fingerprint({{"alertname", "api"}, {"grade", "critical"}});
  CHECK(a == Fingerprint({{"grade", "critical"}, {"alertname", "api"}}));
  CHECK(a != Fingerprint({{"alertname", "api"}, {"grade", "warning"}}));
  CHECK(a.size() == 16);
  // Alertmanager 0.25 reports this fingerprint for {alertname="api"} in /api/v2/alerts.
  CHECK(Fingerprint({{"alertname", "api"}}) == "24c2984142a3acf6");
}

TEST_CASE("entering critical from warning resolves the warning alert and fires critical",
          "[alertmanager]") {
  const std::vector<Alert> alerts = AlertsFor(ApiChange(Grade::kWarning, Grade::kCritical), "");
  REQUIRE(alerts.size() == 2);
  CHECK(alerts[0].labels.at("grade") == "warning");
  CHECK(alerts[0].labels.at("severity") == "warning");
  REQUIRE(alerts[0].ends_at.has_value());
  CHECK(*alerts[0].ends_at == kNow);
  CHECK(alerts[0].starts_at == kNow - 10min);
  CHECK(alerts[1].labels.at("grade") == "critical");
  CHECK(alerts[1].labels.at("severity") == "critical");
  CHECK_FALSE(alerts[1].ends_at.has_value());
  // Identity labels cannot be overridden by rule labels; others are carried.
  CHECK(alerts[1].labels.at("alertname") == "api");
  CHECK(alerts[1].labels.at("rule") == "api");
  CHECK(alerts[1].labels.at("team") == "payments");
  CHECK(alerts[1].labels.at("instance") == "web-1");
  CHECK(alerts[1].annotations.at("summary") == "API 5xx ratio 12%");
  CHECK_THAT(alerts[1].annotations.at("description"),
             Catch::Contains("Values: api_errors > 10% (api_errors=0.12)"));
}

TEST_CASE("the webhook document is Alertmanager's version 4", "[alertmanager]") {
  const std::vector<Alert> alerts = AlertsFor(ApiChange(Grade::kWarning, Grade::kCritical),
                                              "http://rollguard.example:9847/api/v1/status");
  const json doc =
      json::parse(WebhookDocument("pager", alerts, "http://rollguard.example:9847", kNow));
  CHECK(doc["version"] == "4");
  CHECK(doc["receiver"] == "pager");
  CHECK(doc["status"] == "firing");
  CHECK(doc["externalURL"] == "http://rollguard.example:9847");
  CHECK(doc["truncatedAlerts"] == 0);
  CHECK(doc["groupKey"] == "{}:{alertname=\"api\", rule=\"api\"}");
  CHECK(doc["groupLabels"] == json({{"alertname", "api"}, {"rule", "api"}}));
  CHECK(doc["commonLabels"]["team"] == "payments");
  CHECK_FALSE(doc["commonLabels"].contains("grade"));  // warning vs critical
  CHECK(doc["commonAnnotations"]["summary"] == "API 5xx ratio 12%");
  REQUIRE(doc["alerts"].size() == 2);
  const json& resolved = doc["alerts"][0];
  CHECK(resolved["status"] == "resolved");
  CHECK(resolved["endsAt"] == FormatIso8601(kNow));
  const json& firing = doc["alerts"][1];
  CHECK(firing["status"] == "firing");
  CHECK(firing["endsAt"] == "0001-01-01T00:00:00Z");
  CHECK(firing["startsAt"] == FormatIso8601(kNow));
  CHECK(firing["generatorURL"] == "http://rollguard.example:9847/api/v1/status");
  CHECK(firing["fingerprint"] == Fingerprint(alerts[1].labels));
  CHECK(firing["labels"]["grade"] == "critical");
}

TEST_CASE("a resolution document is resolved", "[alertmanager]") {
  Notification n = ApiChange(Grade::kCritical, Grade::kGood);
  n.kind = NotificationKind::kResolved;
  n.alerting = false;
  const std::vector<Alert> alerts = AlertsFor(n, "");
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].labels.at("grade") == "critical");
  const json doc = json::parse(WebhookDocument("pager", alerts, "", kNow));
  CHECK(doc["status"] == "resolved");
  CHECK(doc["alerts"][0]["status"] == "resolved");
}

TEST_CASE("the API payload gives firing alerts an end in the future", "[alertmanager]") {
  const std::vector<Alert> alerts = AlertsFor(ApiChange(Grade::kWarning, Grade::kCritical), "");
  const json body = json::parse(AlertmanagerApiPayload(alerts, kNow + 4min));
  REQUIRE(body.is_array());
  REQUIRE(body.size() == 2);
  CHECK(body[0]["endsAt"] == FormatIso8601(kNow));
  CHECK(body[1]["endsAt"] == FormatIso8601(kNow + 4min));
  CHECK(body[1]["labels"]["grade"] == "critical");
  CHECK_FALSE(body[1].contains("generatorURL"));  // empty: left out
}

TEST_CASE("breakers, reloads and actions are alerts of their own", "[alertmanager]") {
  Notification breaker;
  breaker.kind = NotificationKind::kBreakerOpened;
  breaker.time = kNow;
  breaker.breakers = {BreakerNote{"default", true, 3, 3, kNow + 30min}};
  std::vector<Alert> alerts = AlertsFor(breaker, "");
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].labels.at("alertname") == "RollguardBreakerOpen");
  CHECK(alerts[0].labels.at("breaker") == "default");
  CHECK_FALSE(alerts[0].ends_at.has_value());
  breaker.kind = NotificationKind::kBreakerClosed;
  breaker.previous_since = kNow - 30min;
  alerts = AlertsFor(breaker, "");
  CHECK(*alerts[0].ends_at == kNow);
  CHECK(Fingerprint(alerts[0].labels) == Fingerprint(AlertsFor(breaker, "")[0].labels));

  Notification reload;
  reload.kind = NotificationKind::kReloadFailed;
  reload.time = kNow;
  reload.error = "bad";
  alerts = AlertsFor(reload, "");
  CHECK(alerts[0].labels.at("alertname") == "RollguardConfigReloadFailed");
  CHECK_THAT(alerts[0].annotations.at("description"), Catch::Contains("Error: bad"));

  Notification action = ApiChange(Grade::kWarning, Grade::kCritical);
  action.kind = NotificationKind::kActionDecided;
  ActionNote note;
  note.action = "rollback_api";
  note.decision = "suppressed_breaker";
  action.actions = {note};
  alerts = AlertsFor(action, "");
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0].labels.at("alertname") == "RollguardAction");
  CHECK(alerts[0].labels.at("decision") == "suppressed_breaker");
  CHECK(*alerts[0].ends_at == kNow + kEventLifetime);
}
