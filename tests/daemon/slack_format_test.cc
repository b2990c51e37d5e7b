#include "daemon/slack_format.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

using namespace rollguard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

Notification CriticalApi() {
  Notification n;
  n.kind = NotificationKind::kGradeChanged;
  n.time = FromMillis(1'700'000'000'000);
  n.host = "web-1";
  n.rule = "api";
  n.previous = Grade::kWarning;
  n.grade = Grade::kCritical;
  n.alerting = true;
  n.previous_alerting = true;
  n.summary = "API 5xx ratio 12%";
  n.reason = "api_errors > 10% (api_errors=0.12)";
  n.labels = {{"team", "payments"}, {"service", "api"}};
  ActionNote note;
  note.action = "rollback_api";
  note.decision = "executed";
  note.why = "admitted by breaker default";
  n.actions = {note};
  n.breakers = {BreakerNote{"default", false, 1, 3, std::nullopt}};
  return n;
}

// Every mrkdwn text of every block, joined.
std::string AllText(const json& payload) {
  std::string text;
  for (const json& block : payload["attachments"][0]["blocks"]) {
    if (block.contains("text")) text += block["text"]["text"].get<std::string>() + "\n";
    if (block.contains("fields")) {
      for (const json& field : block["fields"]) text += field["text"].get<std::string>() + "\n";
    }
    if (block.contains("elements")) {
      for (const json& element : block["elements"])
        text += element["text"].get<std::string>() + "\n";
    }
  }
  return text;
}

}  // namespace

TEST_CASE("a grade change has fallback text, a coloured attachment and Block Kit blocks",
          "[slack]") {
  const json payload = json::parse(SlackPayload(CriticalApi()));
  CHECK(payload["text"] == "api: warning → critical");
  REQUIRE(payload["attachments"].size() == 1);
  const json& attachment = payload["attachments"][0];
  CHECK(attachment["color"] == "#e01e5a");
  CHECK(attachment["fallback"] == "api: warning → critical");
  const json& blocks = attachment["blocks"];
  REQUIRE(blocks.size() >= 3);
  CHECK(blocks[0]["type"] == "header");
  CHECK(blocks[0]["text"]["type"] == "plain_text");
  CHECK(blocks[0]["text"]["text"] == "api: warning → critical");
  CHECK(blocks[1]["type"] == "section");
  CHECK(blocks[1]["text"]["text"] == "*Summary*\nAPI 5xx ratio 12%");
  CHECK(blocks.back()["type"] == "context");
  const std::string text = AllText(payload);
  CHECK_THAT(text, Catch::Contains("*Rule*\napi"));
  CHECK_THAT(text, Catch::Contains("*Grade*\nwarning → critical"));
  CHECK_THAT(text, Catch::Contains("*Values*\napi_errors &gt; 10% (api_errors=0.12)"));
  CHECK_THAT(text, Catch::Contains("*What rollguard did*\nrollback_api: running"));
  CHECK_THAT(text, Catch::Contains("breaker default: 2 of 3 actions left"));
  CHECK_THAT(text, Catch::Contains("rollguard on web-1"));
  CHECK_THAT(text, Catch::Contains("team=payments"));
}

TEST_CASE("each grade has its own colour", "[slack]") {
  CHECK(SlackGradeColor(Grade::kExcellent) == "#2eb886");
  CHECK(SlackGradeColor(Grade::kGood) == "#7cd197");
  CHECK(SlackGradeColor(Grade::kWarning) == "#daa038");
  CHECK(SlackGradeColor(Grade::kCritical) == "#e01e5a");
  CHECK(SlackGradeColor(Grade::kFailure) == "#8b0000");
}

TEST_CASE("a resolution is coloured by the grade the rule came back to", "[slack]") {
  Notification n = CriticalApi();
  n.kind = NotificationKind::kResolved;
  n.previous = Grade::kCritical;
  n.grade = Grade::kGood;
  n.actions.clear();
  const json payload = json::parse(SlackPayload(n));
  CHECK(payload["text"] == "api resolved: critical → good");
  CHECK(payload["attachments"][0]["color"] == "#7cd197");
}

TEST_CASE("a suppressed action says why, in the spec's words", "[slack]") {
  Notification n = CriticalApi();
  n.kind = NotificationKind::kActionDecided;
  n.actions[0].decision = "suppressed_breaker";
  n.actions[0].why = "breaker open until 2026-11-23T12:31:00.000Z";
  const json payload = json::parse(SlackPayload(n));
  CHECK(payload["text"] ==
        "api: rollback_api suppressed: breaker open until 2026-11-23T12:31:00.000Z");
  CHECK(payload["attachments"][0]["color"] == "#daa038");
}

TEST_CASE("breaker, reload and action result messages have their colours", "[slack]") {
  Notification n;
  n.time = FromMillis(0);
  n.kind = NotificationKind::kBreakerOpened;
  n.breakers = {BreakerNote{"default", true, 3, 3, FromMillis(30 * 60 * 1000)}};
  json payload = json::parse(SlackPayload(n));
  CHECK(payload["text"] == "breaker default open until 00:30 UTC: rollbacks are suppressed");
  CHECK(payload["attachments"][0]["color"] == "#e01e5a");

  n.kind = NotificationKind::kBreakerClosed;
  payload = json::parse(SlackPayload(n));
  CHECK(payload["attachments"][0]["color"] == "#2eb886");

  Notification reload;
  reload.kind = NotificationKind::kReloadFailed;
  reload.error = "rollguard.conf:3: [daemon] lisen: unknown key";
  payload = json::parse(SlackPayload(reload));
  CHECK(payload["attachments"][0]["color"] == "#e01e5a");
  CHECK_THAT(AllText(payload), Catch::Contains("*Error*\nrollguard.conf:3: [daemon] lisen"));

  Notification finished = CriticalApi();
  finished.kind = NotificationKind::kActionFinished;
  finished.actions[0].result = "failed";
  finished.actions[0].exit_code = 3;
  finished.actions[0].duration_seconds = 0.25;
  payload = json::parse(SlackPayload(finished));
  CHECK(payload["text"] == "api: rollback_api: failed (exit 3) after 0.2s");
  CHECK(payload["attachments"][0]["color"] == "#8b0000");
  finished.actions[0].result = "ok";
  CHECK(json::parse(SlackPayload(finished))["attachments"][0]["color"] == "#2eb886");
}

TEST_CASE("slack text is escaped and cut to Slack's limits", "[slack]") {
  CHECK(SlackEscape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d");
  Notification n = CriticalApi();
  n.rule = std::string(400, 'x');
  n.summary = std::string(5000, 'y');
  const json payload = json::parse(SlackPayload(n));
  const json& blocks = payload["attachments"][0]["blocks"];
  CHECK(blocks[0]["text"]["text"].get<std::string>().size() <= 150);
  CHECK(blocks[1]["text"]["text"].get<std::string>().size() <= 3000);
}

TEST_CASE("stale and held rules say so", "[slack]") {
  Notification n = CriticalApi();
  n.stale = true;
  n.held_by = "db";
  const json payload = json::parse(SlackPayload(n));
  CHECK(payload["text"] == "api: warning → critical (stale) (held by db)");
  const std::string text = AllText(payload);
  CHECK_THAT(text, Catch::Contains("*Held by*\ndb is critical or failure"));
  CHECK_THAT(text, Catch::Contains("*Stale*\nno fresh data"));
}
