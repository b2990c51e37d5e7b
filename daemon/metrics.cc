#include "daemon/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "daemon/action_planner.h"
#include "daemon/probe_metrics.h"

namespace rollguard {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Detection to action includes `for` and `recover` time: seconds to an hour.
const Histogram::BucketBoundaries kDetectionBuckets = {0.1, 0.5, 1,   2.5, 5,    10,  30,
                                                       60,  120, 300, 600, 1800, 3600};

// Every result label actions_total can carry: finished executions and decisions. They are
// created at 0 for each configured action, so increase() sees the first event.
const std::array<std::string_view, 10> kActionResults = {
    "ok",
    "failed",
    "timeout",
    "dry_run",
    "suppressed_breaker",
    "suppressed_cooldown",
    "suppressed_unarmed",
    "suppressed_fleet",
    "suppressed_paused",
    "suppressed_dependency",
};

// Every result label notifications_total can carry (the notifiers' final outcomes). They
// are created at 0 for each configured notifier, so increase() sees the first failure.
const std::array<std::string_view, 3> kNotificationResults = {"sent", "failed", "dropped"};

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  // The series of every probe and rule, updated on every report: kept compact and rendered
  // when scraped (daemon/probe_metrics.h). They come first in the exposition, where they
  // were as the registry's first families.
  ProbeMetrics probes;
  RuleMetrics rules;

  Family<Counter>& actions = prometheus::BuildCounter()
                                 .Name("rollguard_actions_total")
                                 .Help(
                                     "Action outcomes: ok, failed, timeout for executed "
                                     "actions; dry_run and suppressed_* for decisions.")
                                 .Register(*registry);
  Family<Gauge>& breaker_open = prometheus::BuildGauge()
                                    .Name("rollguard_breaker_open")
                                    .Help("1 while the circuit breaker is open.")
                                    .Register(*registry);
  Family<Gauge>& breaker_admitted =
      prometheus::BuildGauge()
          .Name("rollguard_breaker_admitted")
          .Help("Actions the breaker admitted within its trailing window.")
          .Register(*registry);
  Family<Gauge>& breaker_max_actions =
      prometheus::BuildGauge()
          .Name("rollguard_breaker_max_actions")
          .Help("The breaker's max_actions: admitted / max_actions is the budget used.")
          .Register(*registry);
  Family<Gauge>& fleet_redis_up =
      prometheus::BuildGauge()
          .Name("rollguard_fleet_redis_up")
          .Help("1 while a fleet breaker's Redis answers (scope = fleet breakers only).")
          .Register(*registry);
  Family<Counter>& notifications = prometheus::BuildCounter()
                                       .Name("rollguard_notifications_total")
                                       .Help("Notifications sent, by notifier and result.")
                                       .Register(*registry);
  Family<Histogram>& detection_to_action =
      prometheus::BuildHistogram()
          .Name("rollguard_detection_to_action_seconds")
          .Help(
              "From the first evaluation at which the triggering condition held to the "
              "action's start, in seconds.")
          .Register(*registry);
  Family<Gauge>& reload_success =
      prometheus::BuildGauge()
          .Name("rollguard_config_last_reload_success")
          .Help("1 when the last configuration load succeeded, 0 when it was rejected.")
          .Register(*registry);
  Family<Gauge>& reload_timestamp =
      prometheus::BuildGauge()
          .Name("rollguard_config_last_reload_timestamp_seconds")
          .Help("Unix time of the last configuration load, successful or not.")
          .Register(*registry);
  Family<Gauge>& build_info = prometheus::BuildGauge()
                                  .Name("rollguard_build_info")
                                  .Help("Always 1; the version is a label.")
                                  .Register(*registry);

  Histogram& detection = detection_to_action.Add({}, kDetectionBuckets);
  Gauge& reload_ok = reload_success.Add({});
  Gauge& reload_time = reload_timestamp.Add({});

  std::map<std::string, std::map<std::string, Counter*, std::less<>>, std::less<>> action_series;

  // Configured notifiers whose result series exist. Event loop only; the counters
  // themselves are found through Family::Add, which is thread-safe.
  std::set<std::string, std::less<>> notifier_names;

  struct BreakerSeries {
    Gauge* open = nullptr;
    Gauge* admitted = nullptr;
    Gauge* max_actions = nullptr;
    Gauge* redis_up = nullptr;  // fleet breakers only
  };
  std::map<std::string, BreakerSeries> breakers;

  Counter& Action(std::string_view action, std::string_view result) {
    auto& by_result = action_series[std::string(action)];
    auto it = by_result.find(result);
    if (it != by_result.end()) return *it->second;
    Counter& counter =
        actions.Add({{"action", std::string(action)}, {"result", std::string(result)}});
    by_result.emplace(std::string(result), &counter);
    return counter;
  }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
  impl_->build_info.Add({{"version", ROLLGUARD_VERSION}}).Set(1);
}

Metrics::~Metrics() = default;

void Metrics::OnConfigApplied(const Config& config, TimePoint now) {
  Impl& m = *impl_;
  m.reload_ok.Set(1);
  m.reload_time.Set(ToSeconds(now.time_since_epoch()));

  // Probes: series of removed probes (or of a name that changed type) disappear; the
  // others are created by the first result.
  std::map<std::string, std::string, std::less<>> probe_types;
  for (const auto& probe : config.probes) probe_types[probe->spec().name] = probe->spec().type;
  m.probes.Retain(probe_types);

  // Rules: every configured rule has its series from the start, with its (restored)
  // grade; removed rules lose theirs.
  const RuleSet& rules = *config.rules;
  std::vector<RuleMetrics::ConfiguredRule> configured_rules(rules.size());
  for (size_t i = 0; i < rules.size(); ++i) {
    configured_rules[i].name = rules.definition(i).name;
    configured_rules[i].grade = rules.grade(i);
    configured_rules[i].stale = rules.stale(i);
  }
  m.rules.Configure(configured_rules);

  // Actions: every configured action has all its result series, at 0 until counted.
  std::set<std::string, std::less<>> action_names;
  for (const ActionConfig& action : config.actions) {
    action_names.insert(action.name);
    for (std::string_view result : kActionResults) m.Action(action.name, result);
  }
  for (auto it = m.action_series.begin(); it != m.action_series.end();) {
    if (action_names.count(it->first) == 0) {
      for (auto& [result, counter] : it->second) m.actions.Remove(counter);
      it = m.action_series.erase(it);
    } else {
      ++it;
    }
  }

  // Notifiers: likewise every result of every configured notifier, from 0.
  std::set<std::string, std::less<>> notifier_names;
  for (const NotifierConfig& notifier : config.notifiers) {
    notifier_names.insert(notifier.name);
    for (std::string_view result : kNotificationResults) {
      m.notifications.Add({{"notifier", notifier.name}, {"result", std::string(result)}});
    }
  }
  for (const std::string& gone : m.notifier_names) {
    if (notifier_names.count(gone) != 0) continue;
    for (std::string_view result : kNotificationResults) {
      m.notifications.Remove(
          &m.notifications.Add({{"notifier", gone}, {"result", std::string(result)}}));
    }
  }
  m.notifier_names = std::move(notifier_names);
}

void Metrics::OnReloadFailed(const std::string& /*error*/, TimePoint now) {
  impl_->reload_ok.Set(0);
  impl_->reload_time.Set(ToSeconds(now.time_since_epoch()));
}

void Metrics::OnProbeResult(const ProbeSpec& probe, const ProbeResult& result, TimePoint /*now*/) {
  // probe_value mirrors the last result: a field it lacks (a down probe has none) has no
  // series, rather than a stale number that looks current.
  impl_->probes.Record(probe, result);
}

void Metrics::OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                              TimePoint /*now*/) {
  impl_->rules.Record(rules.definition(index).name, outcome.grade, outcome.stale);
}

void Metrics::OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                              TimePoint detected_at) {
  if (plan.decision == ActionDecision::kExecuted) {
    // "executed" is not a result: the execution is counted when it finishes.
    impl_->detection.Observe(std::max(0.0, ToSeconds(record.time - detected_at)));
    return;
  }
  impl_->Action(record.action, DecisionName(plan.decision)).Increment();
}

void Metrics::OnActionFinished(const JournalRecord& record) {
  impl_->Action(record.action, record.result).Increment();
}

void Metrics::OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint /*now*/) {
  Impl& m = *impl_;
  std::set<std::string> seen;
  for (const BreakerReport& report : breakers) {
    seen.insert(report.name);
    Impl::BreakerSeries& series = m.breakers[report.name];
    if (series.open == nullptr) {
      series.open = &m.breaker_open.Add({{"breaker", report.name}});
      series.admitted = &m.breaker_admitted.Add({{"breaker", report.name}});
      series.max_actions = &m.breaker_max_actions.Add({{"breaker", report.name}});
    }
    series.open->Set(report.open ? 1 : 0);
    series.admitted->Set(report.admitted_in_window);
    series.max_actions->Set(report.max_actions);
    if (report.fleet && series.redis_up == nullptr) {
      series.redis_up = &m.fleet_redis_up.Add({{"breaker", report.name}});
    } else if (!report.fleet && series.redis_up != nullptr) {
      m.fleet_redis_up.Remove(series.redis_up);
      series.redis_up = nullptr;
    }
    if (series.redis_up != nullptr) series.redis_up->Set(report.redis_reachable ? 1 : 0);
  }
  for (auto it = m.breakers.begin(); it != m.breakers.end();) {
    if (seen.count(it->first) == 0) {
      m.breaker_open.Remove(it->second.open);
      m.breaker_admitted.Remove(it->second.admitted);
      m.breaker_max_actions.Remove(it->second.max_actions);
      if (it->second.redis_up != nullptr) m.fleet_redis_up.Remove(it->second.redis_up);
      it = m.breakers.erase(it);
    } else {
      ++it;
    }
  }
}

void Metrics::CountNotification(std::string_view notifier, std::string_view result) {
  // Family::Add is thread-safe and returns the existing series for known labels.
  impl_->notifications.Add({{"notifier", std::string(notifier)}, {"result", std::string(result)}})
      .Increment();
}

std::string Metrics::Exposition() const {
  std::vector<prometheus::MetricFamily> families = impl_->probes.Collect();
  for (auto& family : impl_->rules.Collect()) families.push_back(std::move(family));
  for (auto& family : impl_->registry->Collect()) families.push_back(std::move(family));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace rollguard
