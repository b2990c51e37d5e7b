#include "daemon/metrics.h"

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/action_planner.h"
#include "daemon/config.h"

namespace rollguard {
namespace {

// A config folder on disk, loaded by the real loader.
class MetricsConfig {
 public:
  explicit MetricsConfig(const std::string& rules) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "rollguard-metrics-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
    std::filesystem::create_directories(path_ + "/rules.d");
    SetMain("");
    SetRules(rules);
  }
  ~MetricsConfig() { std::filesystem::remove_all(path_); }

  // `sections` follow the [daemon] section of the main config (notifiers, breakers).
  void SetMain(const std::string& sections) {
    std::ofstream(path_ + "/rollguard.conf")
        << "[daemon]\ninclude = rules.d/*.rules\nlisten = off\nstate_dir = state\n"
        << sections;
  }

  void SetRules(const std::string& rules) { std::ofstream(path_ + "/rules.d/main.rules") << rules; }

  Config Load() {
    LoadedConfig loaded = LoadConfig(path_ + "/rollguard.conf");
    INFO(loaded.error.message);
    REQUIRE(loaded.config);
    return std::move(*loaded.config);
  }

 private:
  std::string path_;
};

const char kApi[] = R"(
[probe api]
type = http
url = http://127.0.0.1:1/health
interval = 1s
timeout = 500ms

[rule api]
critical = api.status >= 500
on_critical = rollback

[action rollback]
type = exec
command = /bin/true
)";

const char kDb[] = R"(
[probe db]
type = tcp
address = 127.0.0.1:1
interval = 1s
timeout = 500ms

[rule db]
failure = not db
)";

// Every sample line of the exposition, without comments.
std::vector<std::string> Samples(const Metrics& metrics) {
  std::vector<std::string> lines;
  std::istringstream in(metrics.Exposition());
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

// The value of the sample whose name and labels are exactly `series`, or nullopt.
std::optional<std::string> Sample(const Metrics& metrics, const std::string& series) {
  for (const std::string& line : Samples(metrics)) {
    if (line.compare(0, series.size() + 1, series + " ") == 0)
      return line.substr(series.size() + 1);
  }
  return std::nullopt;
}

bool HasSeriesContaining(const Metrics& metrics, const std::string& text) {
  for (const std::string& line : Samples(metrics)) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

ProbeResult Answer(double status, double latency) {
  ProbeResult result;
  result.up = true;
  result.latency_seconds = latency;
  result.fields["status"] = status;
  result.fields["body_bytes"] = 12.0;
  result.fields["json.state"] = std::string("ok");
  return result;
}

TEST_CASE("metrics: build info and the config's load state from the start", "[metrics]") {
  MetricsConfig folder(kApi);
  Config config = folder.Load();
  Metrics metrics;
  CHECK(Sample(metrics, "rollguard_build_info{version=\"" ROLLGUARD_VERSION "\"}") == "1");
  metrics.OnConfigApplied(config, FromMillis(1'700'000'000'500));
  CHECK(Sample(metrics, "rollguard_config_last_reload_success") == "1");
  CHECK(Sample(metrics, "rollguard_config_last_reload_timestamp_seconds") == "1700000000.5");
  metrics.OnReloadFailed("bad", FromMillis(1'700'000'100'000));
  CHECK(Sample(metrics, "rollguard_config_last_reload_success") == "0");
  CHECK(Sample(metrics, "rollguard_config_last_reload_timestamp_seconds") == "1700000100");
  metrics.OnConfigApplied(config, FromMillis(1'700'000'200'000));
  CHECK(Sample(metrics, "rollguard_config_last_reload_success") == "1");
}

TEST_CASE("metrics: probe success, duration histogram and numeric field values", "[metrics]") {
  MetricsConfig folder(kApi);
  Config config = folder.Load();
  Metrics metrics;
  metrics.OnConfigApplied(config, FromMillis(0));
  const ProbeSpec& spec = config.probes[0]->spec();
  // No report yet: no probe series (no data is not a 0).
  CHECK_FALSE(Sample(metrics, "rollguard_probe_success{probe=\"api\",type=\"http\"}"));

  metrics.OnProbeResult(spec, Answer(200, 0.003), FromMillis(1000));
  metrics.OnProbeResult(spec, Answer(503, 0.2), FromMillis(2000));
  CHECK(Sample(metrics, "rollguard_probe_success{probe=\"api\",type=\"http\"}") == "1");
  CHECK(Sample(metrics, "rollguard_probe_value{field=\"status\",probe=\"api\"}") == "503");
  CHECK(Sample(metrics, "rollguard_probe_value{field=\"body_bytes\",probe=\"api\"}") == "12");
  // Strings are not values.
  CHECK_FALSE(HasSeriesContaining(metrics, "field=\"json.state\""));
  CHECK(Sample(metrics, "rollguard_probe_duration_seconds_count{probe=\"api\",type=\"http\"}") ==
        "2");
  const auto sum =
      Sample(metrics, "rollguard_probe_duration_seconds_sum{probe=\"api\",type=\"http\"}");
  REQUIRE(sum);
  CHECK(std::stod(*sum) == Approx(0.203));
  CHECK(
      Sample(metrics,
             "rollguard_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"0.001\"}") ==
      "0");
  CHECK(
      Sample(metrics,
             "rollguard_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"0.005\"}") ==
      "1");
  CHECK(Sample(metrics,
               "rollguard_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"30\"}") ==
        "2");
  CHECK(
      Sample(metrics,
             "rollguard_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",le=\"+Inf\"}") ==
      "2");

  // Down: success 0, and the fields it no longer reports lose their series.
  ProbeResult down;
  down.error = "connection refused";
  metrics.OnProbeResult(spec, down, FromMillis(3000));
  CHECK(Sample(metrics, "rollguard_probe_success{probe=\"api\",type=\"http\"}") == "0");
  CHECK_FALSE(HasSeriesContaining(metrics, "rollguard_probe_value"));
}

TEST_CASE("metrics: rule grade, grade info and staleness follow evaluations", "[metrics]") {
  MetricsConfig folder(kApi);
  Config config = folder.Load();
  Metrics metrics;
  metrics.OnConfigApplied(config, FromMillis(0));
  CHECK(Sample(metrics, "rollguard_rule_grade{rule=\"api\"}") == "0");
  CHECK(Sample(metrics, "rollguard_rule_stale{rule=\"api\"}") == "1");

  RuleSet& rules = *config.rules;
  rules.Record("api", FromMillis(1000), Answer(503, 0.1));
  const RuleOutcome outcome = rules.Evaluate(0, FromMillis(1000));
  REQUIRE(outcome.grade == Grade::kCritical);
  metrics.OnRuleEvaluated(rules, 0, outcome, FromMillis(1000));
  CHECK(Sample(metrics, "rollguard_rule_grade{rule=\"api\"}") == "3");
  CHECK(Sample(metrics, "rollguard_rule_stale{rule=\"api\"}") == "0");
  for (const char* grade : {"excellent", "good", "warning", "critical", "failure"}) {
    INFO(grade);
    // prometheus-cpp writes labels in name order.
    CHECK(Sample(metrics,
                 "rollguard_rule_grade_info{grade=\"" + std::string(grade) + "\",rule=\"api\"}") ==
          (std::string(grade) == "critical" ? "1" : "0"));
  }
}

JournalRecord Record(const std::string& action, const std::string& decision, int64_t ms) {
  JournalRecord record;
  record.time = FromMillis(ms);
  record.id = std::to_string(ms);
  record.rule = "api";
  record.action = action;
  record.decision = decision;
  return record;
}

TEST_CASE("metrics: actions count decisions and finished executions, not 'executed'", "[metrics]") {
  MetricsConfig folder(kApi);
  Config config = folder.Load();
  Metrics metrics;
  metrics.OnConfigApplied(config, FromMillis(0));
  // Every result of a configured action exists at 0, so increase() sees the first one.
  CHECK(Sample(metrics, "rollguard_actions_total{action=\"rollback\",result=\"ok\"}") == "0");
  CHECK(Sample(metrics,
               "rollguard_actions_total{action=\"rollback\",result=\"suppressed_breaker\"}") ==
        "0");

  PlannedAction executed;
  executed.decision = ActionDecision::kExecuted;
  metrics.OnActionDecided(Record("rollback", "executed", 65'000), executed, FromMillis(5'000));
  CHECK_FALSE(HasSeriesContaining(metrics, "result=\"executed\""));
  CHECK(Sample(metrics, "rollguard_detection_to_action_seconds_count") == "1");
  CHECK(Sample(metrics, "rollguard_detection_to_action_seconds_sum") == "60");
  CHECK(Sample(metrics, "rollguard_detection_to_action_seconds_bucket{le=\"30\"}") == "0");
  CHECK(Sample(metrics, "rollguard_detection_to_action_seconds_bucket{le=\"60\"}") == "1");

  JournalRecord finished = Record("rollback", "executed", 66'000);
  finished.phase = JournalPhase::kFinished;
  finished.result = "timeout";
  metrics.OnActionFinished(finished);
  CHECK(Sample(metrics, "rollguard_actions_total{action=\"rollback\",result=\"timeout\"}") == "1");

  PlannedAction refused;
  refused.decision = ActionDecision::kSuppressedBreaker;
  metrics.OnActionDecided(Record("rollback", "suppressed_breaker", 70'000), refused,
                          FromMillis(69'000));
  metrics.OnActionDecided(Record("rollback", "suppressed_breaker", 71'000), refused,
                          FromMillis(69'000));
  CHECK(Sample(metrics,
               "rollguard_actions_total{action=\"rollback\",result=\"suppressed_breaker\"}") ==
        "2");
  // Only executions start an action: refusals are not in the detection histogram.
  CHECK(Sample(metrics, "rollguard_detection_to_action_seconds_count") == "1");

  PlannedAction dry;
  dry.decision = ActionDecision::kDryRun;
  metrics.OnActionDecided(Record("rollback", "dry_run", 72'000), dry, FromMillis(69'000));
  CHECK(Sample(metrics, "rollguard_actions_total{action=\"rollback\",result=\"dry_run\"}") == "1");
}

TEST_CASE("metrics: breakers and notifications", "[metrics]") {
  Metrics metrics;
  BreakerReport breaker;
  breaker.name = "default";
  breaker.open = true;
  breaker.admitted_in_window = 3;
  breaker.max_actions = 3;
  BreakerReport db;
  db.name = "db";
  db.admitted_in_window = 1;
  metrics.OnBreakers({breaker, db}, FromMillis(0));
  CHECK(Sample(metrics, "rollguard_breaker_open{breaker=\"default\"}") == "1");
  CHECK(Sample(metrics, "rollguard_breaker_admitted{breaker=\"default\"}") == "3");
  CHECK(Sample(metrics, "rollguard_breaker_open{breaker=\"db\"}") == "0");
  CHECK(Sample(metrics, "rollguard_breaker_max_actions{breaker=\"default\"}") == "3");
  CHECK_FALSE(HasSeriesContaining(metrics, "rollguard_fleet_redis_up"));  // local breakers
  breaker.open = false;
  breaker.admitted_in_window = 2;
  metrics.OnBreakers({breaker}, FromMillis(1000));
  CHECK(Sample(metrics, "rollguard_breaker_open{breaker=\"default\"}") == "0");
  CHECK(Sample(metrics, "rollguard_breaker_admitted{breaker=\"default\"}") == "2");
  CHECK_FALSE(HasSeriesContaining(metrics, "breaker=\"db\""));

  // A fleet breaker also says whether its Redis answers.
  BreakerReport fleet;
  fleet.name = "fleet";
  fleet.fleet = true;
  fleet.redis_reachable = false;
  metrics.OnBreakers({breaker, fleet}, FromMillis(2000));
  CHECK(Sample(metrics, "rollguard_fleet_redis_up{breaker=\"fleet\"}") == "0");
  fleet.redis_reachable = true;
  metrics.OnBreakers({breaker, fleet}, FromMillis(3000));
  CHECK(Sample(metrics, "rollguard_fleet_redis_up{breaker=\"fleet\"}") == "1");
  metrics.OnBreakers({breaker}, FromMillis(4000));
  CHECK_FALSE(HasSeriesContaining(metrics, "rollguard_fleet_redis_up"));

  metrics.CountNotification("slack", "sent");
  metrics.CountNotification("slack", "sent");
  metrics.CountNotification("slack", "failed");
  CHECK(Sample(metrics, "rollguard_notifications_total{notifier=\"slack\",result=\"sent\"}") ==
        "2");
  CHECK(Sample(metrics, "rollguard_notifications_total{notifier=\"slack\",result=\"failed\"}") ==
        "1");
}

TEST_CASE("metrics: every result of a configured notifier starts at 0 and leaves with it",
          "[metrics]") {
  MetricsConfig folder(kDb);
  folder.SetMain(
      "[notifier slack]\ntype = slack\nurl = http://127.0.0.1:1/hook\n"
      "[notifier pager]\ntype = webhook\nurl = http://127.0.0.1:1/alerts\n");
  Metrics metrics;
  metrics.OnConfigApplied(folder.Load(), FromMillis(0));
  for (const char* notifier : {"slack", "pager"}) {
    for (const char* result : {"sent", "failed", "dropped"}) {
      INFO(notifier << " " << result);
      CHECK(Sample(metrics, std::string("rollguard_notifications_total{notifier=\"") + notifier +
                                "\",result=\"" + result + "\"}") == "0");
    }
  }
  metrics.CountNotification("pager", "failed");

  // A reload that drops slack removes its series; pager's count survives.
  folder.SetMain("[notifier pager]\ntype = webhook\nurl = http://127.0.0.1:1/alerts\n");
  metrics.OnConfigApplied(folder.Load(), FromMillis(1000));
  CHECK_FALSE(HasSeriesContaining(metrics, "notifier=\"slack\""));
  CHECK(Sample(metrics, "rollguard_notifications_total{notifier=\"pager\",result=\"failed\"}") ==
        "1");
  CHECK(Sample(metrics, "rollguard_notifications_total{notifier=\"pager\",result=\"sent\"}") ==
        "0");
}

TEST_CASE("metrics: a reload removes the series of removed probes, rules and actions",
          "[metrics]") {
  MetricsConfig folder(std::string(kApi) + kDb);
  Config config = folder.Load();
  Metrics metrics;
  metrics.OnConfigApplied(config, FromMillis(0));
  for (const auto& probe : config.probes) {
    metrics.OnProbeResult(probe->spec(), Answer(200, 0.01), FromMillis(1000));
  }
  PlannedAction refused;
  refused.decision = ActionDecision::kSuppressedCooldown;
  metrics.OnActionDecided(Record("rollback", "suppressed_cooldown", 2000), refused, FromMillis(0));
  REQUIRE(HasSeriesContaining(metrics, "probe=\"db\""));
  REQUIRE(HasSeriesContaining(metrics, "rule=\"db\""));

  folder.SetRules(kDb);  // api, its rule and the rollback action are gone
  metrics.OnConfigApplied(folder.Load(), FromMillis(3000));
  CHECK_FALSE(HasSeriesContaining(metrics, "probe=\"api\""));
  CHECK_FALSE(HasSeriesContaining(metrics, "rule=\"api\""));
  CHECK_FALSE(HasSeriesContaining(metrics, "action=\"rollback\""));
  // The survivors keep their values.
  CHECK(Sample(metrics, "rollguard_probe_success{probe=\"db\",type=\"tcp\"}") == "1");
  CHECK(Sample(metrics, "rollguard_probe_duration_seconds_count{probe=\"db\",type=\"tcp\"}") ==
        "1");
  CHECK(Sample(metrics, "rollguard_rule_grade{rule=\"db\"}") == "0");
}

TEST_CASE("metrics: the exposition is Prometheus text with HELP and TYPE", "[metrics]") {
  Metrics metrics;
  const std::string text = metrics.Exposition();
  CHECK(text.find("# TYPE rollguard_build_info gauge") != std::string::npos);
  CHECK(text.find("# HELP rollguard_build_info ") != std::string::npos);
  CHECK(text.find("# TYPE rollguard_config_last_reload_success gauge") != std::string::npos);
  CHECK(text.find("# TYPE rollguard_detection_to_action_seconds histogram") != std::string::npos);
}

}  // namespace
}  // namespace rollguard
