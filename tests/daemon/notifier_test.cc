#include "daemon/notifier.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/config.h"
#include "daemon/notification_queue.h"

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "notifier_test.XXXXXX");
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string path = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

 private:
  std::string path_;
};

// slack: every rule, min_grade warning, reminders every hour.
// pager: min_grade critical, no reminders. db's rule notifies only pager.
constexpr const char* kMain = R"(
[daemon]
include = rules.d/*.rules
listen = off
state_dir = state

[notifier slack]
type = slack
webhook_url_file = slack.url
repeat = 1h

[notifier pager]
type = webhook
url = http://127.0.0.1:9/hook
min_grade = critical
repeat = 0
)";

constexpr const char* kRules = R"(
[probe api]
type = http
url = http://127.0.0.1:9/health

[rule api]
critical = api.status >= 500
warning = api.latency > 1s
on_critical = rollback
labels = team=payments
summary = API answers {{ api.status }}

[rule db]
critical = not api
notify = pager

[action rollback]
type = exec
command = /bin/true
)";

struct Fixture {
  TempDir dir;
  Config config;
  NotificationRouter router{"web-1"};
  TimePoint now = FromMillis(1'700'000'000'000);

  Fixture() {
    dir.Write("slack.url", "https://hooks.slack.example/services/T0/B0/SECRET\n");
    dir.Write("rules.d/api.rules", kRules);
    LoadedConfig loaded = LoadConfig(dir.Write("rollguard.conf", kMain));
    INFO(loaded.error.message);
    REQUIRE(loaded.config.has_value());
    config = std::move(*loaded.config);
    CHECK(router.Configure(config, now).empty());
  }

  size_t Index(const std::string& rule) { return *config.rules->Find(rule); }

  // The configuration after rules.d/api.rules is rewritten to `rules`, as a reload reads it.
  Config Reloaded(const std::string& rules) {
    dir.Write("rules.d/api.rules", rules);
    LoadedConfig reloaded = LoadConfig(config.path);
    INFO(reloaded.error.message);
    REQUIRE(reloaded.config.has_value());
    return std::move(*reloaded.config);
  }

  std::vector<Delivery> Evaluate(const std::string& rule, Grade previous, Grade grade,
                                 bool previous_known = true) {
    RuleOutcome outcome;
    outcome.previous = previous;
    outcome.grade = grade;
    outcome.changed = previous != grade || !previous_known;
    outcome.previous_known = previous_known;
    outcome.stale = false;
    outcome.reason = "api.status >= 500 (api.status=503)";
    return router.OnRuleEvaluated(*config.rules, Index(rule), outcome, now);
  }

  // Evaluations that keep `grade` every `step` for `total`; returns what was sent.
  std::vector<Delivery> Stay(const std::string& rule, Grade grade, Duration total, Duration step) {
    std::vector<Delivery> all;
    for (Duration t = step; t <= total; t += step) {
      now += step;
      for (Delivery& d : Evaluate(rule, grade, grade)) all.push_back(std::move(d));
    }
    return all;
  }
};

std::vector<std::string> Describe(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> out;
  for (const Delivery& d : deliveries) {
    out.push_back(d.notifier + " " + std::string(NotificationKindName(d.notification.kind)));
  }
  return out;
}

JournalRecord Decision(const std::string& rule, const std::string& decision, TimePoint at) {
  JournalRecord record;
  record.time = at;
  record.rule = rule;
  record.action = "rollback";
  record.grade = "critical";
  record.previous_grade = "warning";
  record.decision = decision;
  record.breaker = "default";
  return record;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("notifier sections parse, with the URL read from its secret file", "[notifier]") {
  Fixture f;
  REQUIRE(f.config.notifiers.size() == 2);
  const NotifierConfig& slack = f.config.notifiers[0];
  CHECK(slack.type == NotifierType::kSlack);
  CHECK(slack.url == "https://hooks.slack.example/services/T0/B0/SECRET");
  CHECK(slack.min_grade == Grade::kWarning);
  CHECK(slack.repeat == 1h);
  const NotifierConfig& pager = f.config.notifiers[1];
  CHECK(pager.type == NotifierType::kWebhook);
  CHECK(pager.min_grade == Grade::kCritical);
  CHECK(pager.repeat == 0ms);
}

TEST_CASE("notifier config errors name file, line, section and key, never the secret",
          "[notifier]") {
  TempDir dir;
  dir.Write("rules.d/a.rules",
            "[probe api]\ntype = http\nurl = http://127.0.0.1:9/\n"
            "[rule api]\ncritical = not api\nnotify = slak\n");
  dir.Write("bad.url", "not-a-url-but-secret\n");
  const std::string main = dir.Write("rollguard.conf",
                                     "[daemon]\nstate_dir = s\n"
                                     "[notifier slack]\ntype = slackk\nwebhook_url_file = bad.url\n"
                                     "min_grade = severe\nrepeat = often\n"
                                     "[notifier hook]\ntype = webhook\n");
  const LoadedConfig loaded = LoadConfig(main);
  REQUIRE_FALSE(loaded.config.has_value());
  const std::string& e = loaded.error.message;
  CHECK_THAT(e, Catch::Contains("rollguard.conf:4: [notifier slack] type: expected slack, "
                                "webhook or alertmanager, got \"slackk\""));
  CHECK_THAT(e, Catch::Contains("rollguard.conf:5: [notifier slack] webhook_url_file: expected "
                                "an http:// or https:// URL"));
  CHECK_THAT(e, Catch::Contains("rollguard.conf:6: [notifier slack] min_grade: expected "
                                "excellent, good, warning, critical or failure, got \"severe\""));
  CHECK_THAT(e, Catch::Contains("rollguard.conf:7: [notifier slack] repeat:"));
  CHECK_THAT(e, Catch::Contains("[notifier hook]: missing key: expected url or webhook_url_file"));
  CHECK_THAT(e, Catch::Contains("[rule api] notify: unknown notifier \"slak\""));
  CHECK_THAT(e, !Catch::Contains("not-a-url-but-secret"));
}

TEST_CASE("grade changes at or above min_grade are sent, and the resolution below it",
          "[notifier]") {
  Fixture f;
  CHECK(Describe(f.Evaluate("api", Grade::kExcellent, Grade::kGood)).empty());
  CHECK(Describe(f.Evaluate("api", Grade::kGood, Grade::kWarning)) == V{"slack grade_changed"});
  const auto critical = f.Evaluate("api", Grade::kWarning, Grade::kCritical);
  CHECK(Describe(critical) == V{"slack grade_changed", "pager grade_changed"});
  const Notification& n = critical[0].notification;
  CHECK(n.rule == "api");
  CHECK(n.previous == Grade::kWarning);
  CHECK(n.grade == Grade::kCritical);
  CHECK(n.previous_alerting);
  CHECK(n.host == "web-1");
  CHECK(n.labels.at("team") == "payments");
  CHECK(n.reason == "api.status >= 500 (api.status=503)");
  CHECK_THAT(n.summary, Catch::StartsWith("API answers"));
  CHECK_FALSE(critical[1].notification.previous_alerting);  // warning < pager's critical
  // Back to warning: still a change at/above slack's min_grade; below pager's.
  CHECK(Describe(f.Evaluate("api", Grade::kCritical, Grade::kWarning)) ==
        V{"slack grade_changed", "pager resolved"});
  CHECK(Describe(f.Evaluate("api", Grade::kWarning, Grade::kGood)) == V{"slack resolved"});
  CHECK(Describe(f.Evaluate("api", Grade::kGood, Grade::kExcellent)).empty());
}

TEST_CASE("the first grade after start is a change from none only when it matters", "[notifier]") {
  Fixture f;
  CHECK(Describe(f.Evaluate("api", Grade::kExcellent, Grade::kGood, false)).empty());
  Fixture g;
  const auto sent = g.Evaluate("api", Grade::kExcellent, Grade::kCritical, false);
  REQUIRE(Describe(sent) == V{"slack grade_changed", "pager grade_changed"});
  CHECK_FALSE(sent[0].notification.previous_known);
  CHECK_FALSE(sent[0].notification.previous_alerting);
  CHECK(NotificationTitle(sent[0].notification) == "api: none → critical");
}

TEST_CASE("reminders come every repeat while a rule stays at or above min_grade", "[notifier]") {
  Fixture f;
  f.Evaluate("api", Grade::kGood, Grade::kCritical);
  // slack repeats hourly; pager has repeat = 0. Evaluated every 10 minutes for 3h.
  const auto reminders = f.Stay("api", Grade::kCritical, 3h, 10min);
  CHECK(Describe(reminders) == V{"slack reminder", "slack reminder", "slack reminder"});
  CHECK(reminders[0].notification.grade == Grade::kCritical);
  // Below min_grade nothing is repeated.
  f.Evaluate("api", Grade::kCritical, Grade::kGood);
  CHECK(f.Stay("api", Grade::kGood, 3h, 10min).empty());
}

TEST_CASE("a rule's notify list restricts who hears about it", "[notifier]") {
  Fixture f;
  CHECK(Describe(f.Evaluate("db", Grade::kExcellent, Grade::kCritical)) ==
        V{"pager grade_changed"});
}

TEST_CASE("decisions of a grade entry are told with the grade change", "[notifier]") {
  Fixture f;
  PlannedAction plan;
  plan.why = "admitted by breaker default";
  CHECK(f.router.OnActionDecided(Decision("api", "executed", f.now), plan).empty());
  const auto sent = f.Evaluate("api", Grade::kWarning, Grade::kCritical);
  REQUIRE(Describe(sent) == V{"slack grade_changed", "pager grade_changed"});
  REQUIRE(sent[0].notification.actions.size() == 1);
  CHECK(sent[0].notification.actions[0].decision == "executed");
  CHECK(sent[0].notification.actions[0].why == "admitted by breaker default");
  // Told once: nothing is left to go out on its own later.
  CHECK(f.router.OnBreakers({}, f.now + 5s).empty());
}

TEST_CASE("every suppressed decision reaches every notifier", "[notifier]") {
  Fixture f;
  PlannedAction plan;
  plan.why = "breaker open until 12:31";
  // db notifies only pager, and stays below slack's interest; slack still hears it.
  f.router.OnActionDecided(Decision("db", "suppressed_breaker", f.now), plan);
  const auto sent = f.Evaluate("db", Grade::kWarning, Grade::kCritical);
  REQUIRE(Describe(sent) == V{"pager grade_changed", "slack action_decided"});
  CHECK(sent[0].notification.actions.size() == 1);
  CHECK(sent[1].notification.actions[0].decision == "suppressed_breaker");
  CHECK(NotificationTitle(sent[1].notification) ==
        "db: rollback suppressed: breaker open until 12:31");
}

TEST_CASE("decisions no evaluation follows go out on their own after 2s", "[notifier]") {
  Fixture f;
  PlannedAction plan;
  f.router.OnActionDecided(Decision("api", "executed", f.now), plan);
  CHECK(f.router.OnBreakers({}, f.now + 1s).empty());
  CHECK(Describe(f.router.OnBreakers({}, f.now + 2s)) ==
        V{"slack action_decided", "pager action_decided"});
}

TEST_CASE("action results go to the rule's notifiers", "[notifier]") {
  Fixture f;
  JournalRecord record = Decision("db", "executed", f.now);
  record.phase = JournalPhase::kFinished;
  record.result = "failed";
  record.exit_code = 1;
  const auto sent = f.router.OnActionFinished(record);
  REQUIRE(Describe(sent) == V{"pager action_finished"});
  CHECK(sent[0].notification.actions[0].result == "failed");
}

TEST_CASE("breakers are told once when they open and once when they close", "[notifier]") {
  Fixture f;
  BreakerReport report;
  report.name = "default";
  report.admitted_in_window = 2;
  report.max_actions = 3;
  CHECK(f.router.OnBreakers({report}, f.now).empty());
  report.open = true;
  report.admitted_in_window = 3;
  report.open_until = f.now + 30min;
  CHECK(Describe(f.router.OnBreakers({report}, f.now)) ==
        V{"slack breaker_opened", "pager breaker_opened"});
  CHECK(f.router.OnBreakers({report}, f.now + 1s).empty());
  // A grade message shows the budget of the breakers the rule's actions use.
  const auto change = f.Evaluate("api", Grade::kWarning, Grade::kCritical);
  REQUIRE(change[0].notification.breakers.size() == 1);
  CHECK(change[0].notification.breakers[0].open);
  report.open = false;
  report.open_until.reset();
  CHECK(Describe(f.router.OnBreakers({report}, f.now + 31min)) ==
        V{"slack breaker_closed", "pager breaker_closed"});
}

TEST_CASE("a failed reload is told, and so is the next configuration that applies", "[notifier]") {
  Fixture f;
  const auto failed =
      f.router.OnReloadFailed("rollguard.conf:3: [daemon] lisen: unknown key", f.now);
  REQUIRE(Describe(failed) == V{"slack reload_failed", "pager reload_failed"});
  CHECK(failed[0].notification.error == "rollguard.conf:3: [daemon] lisen: unknown key");
  CHECK(Describe(f.router.Configure(f.config, f.now + 1min)) ==
        V{"slack reload_recovered", "pager reload_recovered"});
  CHECK(f.router.Configure(f.config, f.now + 2min).empty());
}

TEST_CASE("held and stale rules say so", "[notifier]") {
  Fixture f;
  f.Evaluate("api", Grade::kGood, Grade::kCritical);
  RuleOutcome outcome;
  outcome.previous = Grade::kCritical;
  outcome.grade = Grade::kCritical;
  outcome.stale = true;
  outcome.reason = "no fresh data from api";
  const auto stale = f.router.OnRuleEvaluated(*f.config.rules, f.Index("api"), outcome, f.now);
  REQUIRE(Describe(stale) == V{"slack stale", "pager stale"});
  CHECK(stale[0].notification.stale);
  // Staying stale is not told again.
  CHECK(f.router.OnRuleEvaluated(*f.config.rules, f.Index("api"), outcome, f.now + 1s).empty());

  RuleOutcome held;
  held.previous = Grade::kWarning;
  held.grade = Grade::kCritical;
  held.changed = true;
  held.held_by = "db";
  const auto sent = f.router.OnRuleEvaluated(*f.config.rules, f.Index("api"), held, f.now);
  REQUIRE_FALSE(sent.empty());
  CHECK(sent[0].notification.held_by == std::optional<std::string>("db"));
}

TEST_CASE("a rule a reload removes while alerting is resolved", "[notifier]") {
  Fixture f;
  f.Evaluate("db", Grade::kGood, Grade::kCritical);
  const Config reloaded = f.Reloaded(R"(
[probe api]
type = http
url = http://127.0.0.1:9/health
[rule api]
critical = not api
)");
  const auto sent = f.router.Configure(reloaded, f.now);
  REQUIRE(Describe(sent) == V{"pager resolved"});
  CHECK(sent[0].notification.previous == Grade::kCritical);
  CHECK(sent[0].notification.reason == "the rule was removed from the configuration");
}

TEST_CASE("a rule a reload removes is resolved with its old labels and breakers", "[notifier]") {
  Fixture f;
  BreakerReport report;
  report.name = "default";
  report.max_actions = 3;
  f.router.OnBreakers({report}, f.now);
  f.Evaluate("api", Grade::kGood, Grade::kCritical);
  const Config reloaded = f.Reloaded(R"(
[probe api]
type = http
url = http://127.0.0.1:9/health
[rule db]
critical = not api
)");
  const auto sent = f.router.Configure(reloaded, f.now + 1min);
  REQUIRE(Describe(sent) == V{"slack resolved", "pager resolved"});
  const Notification& n = sent[0].notification;
  CHECK(n.rule == "api");
  CHECK(n.labels.at("team") == "payments");
  REQUIRE(n.breakers.size() == 1);
  CHECK(n.breakers[0].name == "default");
  CHECK(n.previous_since == f.now);
  // Resolved once: its state went with it.
  CHECK(f.router.Configure(reloaded, f.now + 2min).empty());
}

TEST_CASE("a rule a reload keeps keeps its state, whichever RuleSet is evaluated", "[notifier]") {
  Fixture f;
  f.Evaluate("api", Grade::kGood, Grade::kCritical);
  const TimePoint entered = f.now;
  const Config reloaded =
      f.Reloaded(std::string(kRules) + "\n[rule extra]\ncritical = not api\nnotify = slack\n");
  REQUIRE(reloaded.rules != f.config.rules);
  CHECK(f.router.Configure(reloaded, f.now + 1min).empty());

  // Still critical, unchanged: the reminder keeps its hour from before the reload.
  RuleOutcome same;
  same.previous = Grade::kCritical;
  same.grade = Grade::kCritical;
  same.previous_known = true;
  same.stale = false;
  const size_t api = *reloaded.rules->Find("api");
  CHECK(f.router.OnRuleEvaluated(*reloaded.rules, api, same, f.now + 59min).empty());
  const auto reminder = f.router.OnRuleEvaluated(*reloaded.rules, api, same, f.now + 60min);
  REQUIRE(Describe(reminder) == V{"slack reminder"});
  CHECK(reminder[0].notification.grade_since == entered);

  // An evaluation of the RuleSet before the reload is taken by name, with the same state
  // and the configured rule's notify list; a rule only it has is ignored.
  RuleOutcome worse;
  worse.previous = Grade::kCritical;
  worse.grade = Grade::kFailure;
  worse.changed = true;
  worse.previous_known = true;
  worse.stale = false;
  const auto old_set =
      f.router.OnRuleEvaluated(*f.config.rules, f.Index("api"), worse, f.now + 61min);
  REQUIRE(Describe(old_set) == V{"slack grade_changed", "pager grade_changed"});
  CHECK(old_set[0].notification.previous_since == entered);
  CHECK(old_set[0].notification.labels.at("team") == "payments");
  const size_t extra = *reloaded.rules->Find("extra");
  const auto first = f.router.OnRuleEvaluated(*reloaded.rules, extra, worse, f.now);
  CHECK(Describe(first) == V{"slack grade_changed"});

  // A verify failure finds the rule's state by name.
  VerifyFailure failure;
  failure.rule = "api";
  failure.grade = "failure";
  failure.action = "rollback";
  failure.now = f.now + 62min;
  const auto verify = f.router.OnVerifyFailed(failure);
  REQUIRE(Describe(verify) == V{"slack verify_failed", "pager verify_failed"});
  CHECK(verify[0].notification.grade_since == f.now + 61min);
  CHECK(verify[0].notification.previous_since == entered);
}

TEST_CASE("webhook messages are version 4 documents addressed to the notifier", "[notifier]") {
  Fixture f;
  const auto sent = f.Evaluate("api", Grade::kWarning, Grade::kCritical);
  const std::string body = RenderMessage(f.config.notifiers[1], sent[1].notification);
  CHECK_THAT(body, Catch::Contains("\"version\":\"4\""));
  CHECK_THAT(body, Catch::Contains("\"receiver\":\"pager\""));
  CHECK_THAT(RenderMessage(f.config.notifiers[0], sent[0].notification),
             !Catch::Contains("SECRET"));
}

// ---- delivery queue

TEST_CASE("a failing delivery is retried with exponential backoff, then given up",
          "[notification_queue]") {
  NotificationQueue queue(QueuePolicy{10, 9, 1s, 60s});
  queue.Push({"{}", "", "m"});
  TimePoint now{};
  std::vector<int64_t> waits;
  for (int attempt = 1; attempt <= 9; ++attempt) {
    REQUIRE(queue.StartNext(now) != nullptr);
    CHECK(queue.StartNext(now) == nullptr);  // one in flight at a time
    const FinishResult result = queue.Finish(AttemptOutcome::kTransient, now);
    if (attempt == 9) {
      CHECK(result == FinishResult::kGaveUp);
      break;
    }
    REQUIRE(result == FinishResult::kWillRetry);
    const TimePoint due = *queue.NextAttemptAt();
    waits.push_back((due - now).count() / 1000);
    CHECK(queue.StartNext(due - 1ms) == nullptr);  // not before its backoff
    now = due;
  }
  CHECK(waits == std::vector<int64_t>{1, 2, 4, 8, 16, 32, 60, 60});
  CHECK(queue.failed() == 1);
  CHECK(queue.sent() == 0);
  CHECK(queue.size() == 0);
}

TEST_CASE("a 4xx-like failure is not retried and a Retry-After is honoured",
          "[notification_queue]") {
  NotificationQueue queue(QueuePolicy{10, 5, 1s, 60s});
  queue.Push({"a", "", "a"});
  queue.Push({"b", "", "b"});
  REQUIRE(queue.StartNext(TimePoint{})->body == "a");
  CHECK(queue.Finish(AttemptOutcome::kPermanent, TimePoint{}) == FinishResult::kGaveUp);
  REQUIRE(queue.StartNext(TimePoint{})->body == "b");
  CHECK(queue.Finish(AttemptOutcome::kTransient, TimePoint{}, 30s) == FinishResult::kWillRetry);
  CHECK(*queue.NextAttemptAt() == TimePoint{} + 30s);
  REQUIRE(queue.StartNext(TimePoint{} + 30s) != nullptr);
  CHECK(queue.Finish(AttemptOutcome::kSent, TimePoint{} + 30s) == FinishResult::kDelivered);
  CHECK(queue.sent() == 1);
  CHECK(queue.failed() == 1);
}

TEST_CASE("a full queue drops its oldest waiting message, never the one in flight",
          "[notification_queue]") {
  NotificationQueue queue(QueuePolicy{2, 3, 1s, 60s});
  queue.Push({"1", "", ""});
  REQUIRE(queue.StartNext(TimePoint{})->body == "1");
  queue.Push({"2", "", ""});
  queue.Push({"3", "", ""});
  queue.Push({"4", "", ""});
  CHECK(queue.dropped() == 1);
  CHECK(queue.size() == 3);
  CHECK(queue.Finish(AttemptOutcome::kSent, TimePoint{}) == FinishResult::kDelivered);
  CHECK(queue.StartNext(TimePoint{})->body == "3");
}

TEST_CASE("a keep-alive replaces the one still waiting", "[notification_queue]") {
  NotificationQueue queue(QueuePolicy{10, 3, 1s, 60s});
  queue.Push({"event", "", ""});
  queue.Push({"old", "keep-alive", ""});
  queue.Push({"new", "keep-alive", ""});
  CHECK(queue.size() == 2);
  CHECK(queue.StartNext(TimePoint{})->body == "event");
  queue.Finish(AttemptOutcome::kSent, TimePoint{});
  CHECK(queue.StartNext(TimePoint{})->body == "new");
}

TEST_CASE("a failed verify is told to the rule's notifiers whatever their min_grade",
          "[notifier]") {
  Fixture f;
  VerifyFailure failure;
  failure.rule = "db";
  failure.action = "rollback";
  failure.grade = "warning";
  failure.verify = 5min;
  failure.action_finished = FromMillis(0);
  failure.now = FromMillis(5 * 60 * 1000);
  failure.escalate = "page_oncall";
  const auto sent = f.router.OnVerifyFailed(failure);
  REQUIRE(Describe(sent) == V{"pager verify_failed"});  // db notifies only pager
  CHECK(NotificationTitle(sent[0].notification) == "db: rollback did not help, still warning");
  CHECK(sent[0].notification.error ==
        "rollback finished at 00:00 UTC; 5m later db is still warning: escalating to page_oncall");
}
