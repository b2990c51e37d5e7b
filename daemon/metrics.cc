#include "daemon/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "daemon/action_planner.h"

namespace rollguard {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Probe runs last from a millisecond (loopback TCP) to their timeout (at most 30s is
// sensible for a health check).
const Histogram::BucketBoundaries kProbeBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1,     2.5,  5,     10,   30};
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

  Family<Gauge>& probe_success = prometheus::BuildGauge()
                                     .Name("rollguard_probe_success")
                                     .Help("1 when the probe's last run was up, else 0.")
                                     .Register(*registry);
  Family<Histogram>& probe_duration = prometheus::BuildHistogram()
                                          .Name("rollguard_probe_duration_seconds")
                                          .Help("How long probe runs took, in seconds.")
                                          .Register(*registry);
  Family<Gauge>& probe_value = prometheus::BuildGauge()
                                   .Name("rollguard_probe_value")
                                   .Help("The last numeric value of each probe field.")
                                   .Register(*registry);
  Family<Gauge>& rule_grade =
      prometheus::BuildGauge()
          .Name("rollguard_rule_grade")
          .Help("The rule's grade: 0 excellent, 1 good, 2 warning, 3 critical, 4 failure.")
          .Register(*registry);
  Family<Gauge>& rule_grade_info = prometheus::BuildGauge()
                                       .Name("rollguard_rule_grade_info")
                                       .Help("1 for the rule's current grade, 0 for the others.")
                                       .Register(*registry);
  Family<Gauge>& rule_stale = prometheus::BuildGauge()
                                  .Name("rollguard_rule_stale")
                                  .Help("1 while every probe the rule reads is stale.")
                                  .Register(*registry);
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

  struct ProbeSeries {
    std::string type;
    Gauge* success = nullptr;
    Histogram* duration = nullptr;
    std::map<std::string, Gauge*> values;
  };
  std::map<std::string, ProbeSeries, std::less<>> probes;

  struct RuleSeries {
    Gauge* grade = nullptr;
    std::array<Gauge*, kGradeCount> info{};
    Gauge* stale = nullptr;
  };
  std::map<std::string, RuleSeries, std::less<>> rules;

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

  void RemoveProbe(ProbeSeries& series) {
    if (series.success != nullptr) probe_success.Remove(series.success);
    if (series.duration != nullptr) probe_duration.Remove(series.duration);
    for (auto& [field, gauge] : series.values) probe_value.Remove(gauge);
    series = ProbeSeries{};
  }

  void RemoveRule(RuleSeries& series) {
    rule_grade.Remove(series.grade);
    for (Gauge* gauge : series.info) rule_grade_info.Remove(gauge);
    rule_stale.Remove(series.stale);
  }

  RuleSeries& Rule(const std::string& name) {
    auto it = rules.find(name);
    if (it != rules.end()) return it->second;
    RuleSeries series;
    series.grade = &rule_grade.Add({{"rule", name}});
    for (int g = 0; g < kGradeCount; ++g) {
      series.info[static_cast<size_t>(g)] = &rule_grade_info.Add(
          {{"rule", name}, {"grade", std::string(GradeName(static_cast<Grade>(g)))}});
    }
    series.stale = &rule_stale.Add({{"rule", name}});
    return rules.emplace(name, series).first->second;
  }

  void SetRule(const std::string& name, Grade grade, bool stale) {
    RuleSeries& series = Rule(name);
    series.grade->Set(GradeIndex(grade));
    for (int g = 0; g < kGradeCount; ++g) {
      series.info[static_cast<size_t>(g)]->Set(g == GradeIndex(grade) ? 1 : 0);
    }
    series.stale->Set(stale ? 1 : 0);
  }

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
  for (auto it = m.probes.begin(); it != m.probes.end();) {
    auto kept = probe_types.find(it->first);
    if (kept == probe_types.end() || kept->second != it->second.type) {
      m.RemoveProbe(it->second);
      it = m.probes.erase(it);
    } else {
      ++it;
    }
  }

  // Rules: every configured rule has its series from the start, with its (restored)
  // grade; removed rules lose theirs.
  const RuleSet& rules = *config.rules;
  std::set<std::string, std::less<>> rule_names;
  for (size_t i = 0; i < rules.size(); ++i) {
    const std::string& name = rules.definition(i).name;
    rule_names.insert(name);
    m.SetRule(name, rules.grade(i), rules.stale(i));
  }
  for (auto it = m.rules.begin(); it != m.rules.end();) {
    if (rule_names.count(it->first) == 0) {
      m.RemoveRule(it->second);
      it = m.rules.erase(it);
    } else {
      ++it;
    }
  }

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
  Impl& m = *impl_;
  Impl::ProbeSeries& series = m.probes[probe.name];
  if (series.success == nullptr) {
    series.type = probe.type;
    const prometheus::Labels labels = {{"probe", probe.name}, {"type", probe.type}};
    series.success = &m.probe_success.Add(labels);
    series.duration = &m.probe_duration.Add(labels, kProbeBuckets);
  }
  series.success->Set(result.up ? 1 : 0);
  series.duration->Observe(result.latency_seconds);

  // probe_value mirrors the last result: a field it lacks (a down probe has none) has no
  // series, rather than a stale number that looks current.
  for (auto it = series.values.begin(); it != series.values.end();) {
    auto field = result.fields.find(it->first);
    if (field == result.fields.end() || !std::holds_alternative<double>(field->second)) {
      m.probe_value.Remove(it->second);
      it = series.values.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [field, value] : result.fields) {
    const double* number = std::get_if<double>(&value);
    if (number == nullptr) continue;
    Gauge*& gauge = series.values[field];
    if (gauge == nullptr) gauge = &m.probe_value.Add({{"probe", probe.name}, {"field", field}});
    gauge->Set(*number);
  }
}

void Metrics::OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                              TimePoint /*now*/) {
  const std::string& name = rules.definition(index).name;
  if (impl_->rules.find(name) == impl_->rules.end()) return;  // not of the running config
  impl_->SetRule(name, outcome.grade, outcome.stale);
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
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, impl_->registry->Collect());
  return out.str();
}

}  // namespace rollguard
