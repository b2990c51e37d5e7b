// Metrics: rollguard's Prometheus metrics (spec §7), kept from what the runtime reports.
//
// Every metric is prefixed rollguard_; names and labels are exactly the spec's:
//   probe_success{probe,type}            1 when the last run was up, else 0
//   probe_duration_seconds{probe,type}   histogram of run latencies, 1ms .. 30s buckets
//   probe_value{probe,field}             the last numeric value of each field (a field the
//                                        last result lacks has no series)
//   rule_grade{rule}                     0 excellent, 1 good, 2 warning, 3 critical, 4 failure
//   rule_grade_info{rule,grade}          1 for the current grade, 0 for the other four
//   rule_stale{rule}                     1 while every probe the rule reads is stale
//   actions_total{action,result}         ok | failed | timeout when an executed action
//                                        finishes; dry_run and suppressed_* when decided
//   breaker_open{breaker}, breaker_admitted{breaker}
//   notifications_total{notifier,result} sent | failed | dropped, counted by the notifiers
//                                        (CountNotification); every result of every
//                                        configured notifier starts at 0
//   detection_to_action_seconds          histogram: condition first held -> action start
//   config_last_reload_success, config_last_reload_timestamp_seconds
//   build_info{version}                  always 1
// A reload removes the series of probes, rules and actions that are gone; surviving
// series keep their values (counters are never reset by a reload).
//
// The probe_* and rule_* series, one set per probe and rule updated on every report, are
// kept by ProbeMetrics and RuleMetrics (daemon/probe_metrics.h): O(fields) per report, no
// scan of other probes. The rest are prometheus-cpp families.
//
// Threads: observer calls belong to the event loop. Exposition() and
// CountNotification() may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "daemon/observer.h"

namespace rollguard {

class Metrics final : public RuntimeObserver {
 public:
  Metrics();
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void OnConfigApplied(const Config& config, TimePoint now) override;
  void OnReloadFailed(const std::string& error, TimePoint now) override;
  void OnProbeResult(const ProbeSpec& probe, const ProbeResult& result, TimePoint now) override;
  void OnRuleEvaluated(const RuleSet& rules, size_t index, const RuleOutcome& outcome,
                       TimePoint now) override;
  void OnActionDecided(const JournalRecord& record, const PlannedAction& plan,
                       TimePoint detected_at) override;
  void OnActionFinished(const JournalRecord& record) override;
  void OnBreakers(const std::vector<BreakerReport>& breakers, TimePoint now) override;

  // One final delivery result of notifier `notifier` ("slack"): "sent", "failed" or
  // "dropped" (the notifiers' names). Any thread.
  void CountNotification(std::string_view notifier, std::string_view result);

  // The Prometheus text exposition format 0.0.4 of every metric. Any thread.
  std::string Exposition() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard
