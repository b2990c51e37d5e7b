#include "daemon/probe_metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <algorithm>
#include <limits>
#include <unordered_set>
#include <utility>
#include <variant>

namespace rollguard {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily EmptyFamily(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

ClientMetric::Label Label(std::string_view name, std::string_view value) {
  ClientMetric::Label label;
  label.name = name;
  label.value = value;
  return label;
}

// Entries of a hash map in name order, so that scrapes list series the same way each time.
template <typename Map>
std::vector<const typename Map::value_type*> SortedByName(const Map& map) {
  std::vector<const typename Map::value_type*> sorted;
  sorted.reserve(map.size());
  for (const auto& entry : map) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  return sorted;
}

// prometheus-cpp's Collect leaves out a family that has no series; so does ours.
void AppendUnlessEmpty(std::vector<MetricFamily>& families, MetricFamily family) {
  if (!family.metric.empty()) families.push_back(std::move(family));
}

}  // namespace

void ProbeMetrics::Record(const ProbeSpec& probe, const ProbeResult& result) {
  std::lock_guard lock(mutex_);
  auto it = probes_.find(probe.name);
  if (it == probes_.end()) {
    it = probes_.emplace(probe.name, Probe{}).first;
    it->second.type = names_.Acquire(probe.type);
  }
  Probe& state = it->second;
  state.up = result.up;

  // The bucket of the first bound >= the latency, as prometheus-cpp's Histogram::Observe
  // (NaN lands in +Inf).
  const auto bound = std::find_if(kDurationBuckets.begin(), kDurationBuckets.end(),
                                  [&](double upper) { return upper >= result.latency_seconds; });
  ++state.duration_counts[static_cast<size_t>(bound - kDurationBuckets.begin())];
  state.duration_sum += result.latency_seconds;

  // Room for exactly the numeric fields, not the doubling push_back would leave: a probe
  // keeps its fields for life. Counted only when the result has more fields than slots.
  if (state.fields.size() < result.fields.size()) {
    const auto numeric =
        std::count_if(result.fields.begin(), result.fields.end(),
                      [](const auto& f) { return std::holds_alternative<double>(f.second); });
    state.fields.reserve(static_cast<size_t>(numeric));
  }
  // A probe reports the same fields in the same order run after run, so each field
  // usually finds its own name already in its slot and only the value is written.
  uint32_t count = 0;
  for (const auto& [name, value] : result.fields) {
    const double* number = std::get_if<double>(&value);
    if (number == nullptr) continue;
    if (count == state.fields.size()) {
      state.fields.push_back(NumericField{names_.Acquire(name), *number});
    } else {
      NumericField& field = state.fields[count];
      if (*field.name != name) {
        const std::string* renamed = names_.Acquire(name);
        names_.Release(field.name);
        field.name = renamed;
      }
      field.value = *number;
    }
    ++count;
  }
  state.field_count = count;
}

void ProbeMetrics::Retain(const std::map<std::string, std::string, std::less<>>& type_by_name) {
  std::lock_guard lock(mutex_);
  for (auto it = probes_.begin(); it != probes_.end();) {
    auto configured = type_by_name.find(it->first);
    if (configured == type_by_name.end() || configured->second != *it->second.type) {
      names_.Release(it->second.type);
      for (const NumericField& field : it->second.fields) names_.Release(field.name);
      it = probes_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t ProbeMetrics::shared_name_count() const {
  std::lock_guard lock(mutex_);
  return names_.size();
}

std::vector<MetricFamily> ProbeMetrics::Collect() const {
  MetricFamily success = EmptyFamily(
      "rollguard_probe_success", "1 when the probe's last run was up, else 0.", MetricType::Gauge);
  MetricFamily duration =
      EmptyFamily("rollguard_probe_duration_seconds", "How long probe runs took, in seconds.",
                  MetricType::Histogram);
  MetricFamily values = EmptyFamily(
      "rollguard_probe_value", "The last numeric value of each probe field.", MetricType::Gauge);

  std::lock_guard lock(mutex_);
  success.metric.reserve(probes_.size());
  duration.metric.reserve(probes_.size());
  for (const auto* entry : SortedByName(probes_)) {
    const std::string& name = entry->first;
    const Probe& probe = entry->second;

    ClientMetric& up = success.metric.emplace_back();
    up.label = {Label("probe", name), Label("type", *probe.type)};
    up.gauge.value = probe.up ? 1 : 0;

    ClientMetric& latency = duration.metric.emplace_back();
    latency.label = up.label;
    latency.histogram.bucket.reserve(probe.duration_counts.size());
    uint64_t cumulative = 0;
    for (size_t i = 0; i < probe.duration_counts.size(); ++i) {
      cumulative += probe.duration_counts[i];
      ClientMetric::Bucket& bucket = latency.histogram.bucket.emplace_back();
      bucket.cumulative_count = cumulative;
      bucket.upper_bound = i < kDurationBuckets.size() ? kDurationBuckets[i]
                                                       : std::numeric_limits<double>::infinity();
    }
    latency.histogram.sample_count = cumulative;
    latency.histogram.sample_sum = probe.duration_sum;

    for (size_t i = 0; i < probe.field_count; ++i) {
      ClientMetric& value = values.metric.emplace_back();
      value.label = {Label("field", *probe.fields[i].name), Label("probe", name)};
      value.gauge.value = probe.fields[i].value;
    }
  }

  std::vector<MetricFamily> families;
  AppendUnlessEmpty(families, std::move(success));
  AppendUnlessEmpty(families, std::move(duration));
  AppendUnlessEmpty(families, std::move(values));
  return families;
}

void RuleMetrics::Configure(const std::vector<ConfiguredRule>& rules) {
  std::unordered_set<std::string_view> configured;
  configured.reserve(rules.size());
  std::lock_guard lock(mutex_);
  for (const ConfiguredRule& rule : rules) {
    configured.insert(rule.name);
    auto it = rules_.find(rule.name);
    if (it == rules_.end()) it = rules_.emplace(std::string(rule.name), Rule{}).first;
    it->second.grade = rule.grade;
    it->second.stale = rule.stale;
  }
  for (auto it = rules_.begin(); it != rules_.end();) {
    if (configured.count(it->first) == 0) {
      it = rules_.erase(it);
    } else {
      ++it;
    }
  }
}

void RuleMetrics::Record(std::string_view rule, Grade grade, bool stale) {
  std::lock_guard lock(mutex_);
  auto it = rules_.find(rule);
  if (it == rules_.end()) return;  // an evaluation that raced a reload
  it->second.grade = grade;
  it->second.stale = stale;
}

std::vector<MetricFamily> RuleMetrics::Collect() const {
  MetricFamily grade =
      EmptyFamily("rollguard_rule_grade",
                  "The rule's grade: 0 excellent, 1 good, 2 warning, 3 critical, 4 failure.",
                  MetricType::Gauge);
  MetricFamily info =
      EmptyFamily("rollguard_rule_grade_info", "1 for the rule's current grade, 0 for the others.",
                  MetricType::Gauge);
  MetricFamily stale = EmptyFamily(
      "rollguard_rule_stale", "1 while every probe the rule reads is stale.", MetricType::Gauge);

  std::lock_guard lock(mutex_);
  grade.metric.reserve(rules_.size());
  info.metric.reserve(rules_.size() * kGradeCount);
  stale.metric.reserve(rules_.size());
  for (const auto* entry : SortedByName(rules_)) {
    const std::string& name = entry->first;
    const Rule& rule = entry->second;

    ClientMetric& current = grade.metric.emplace_back();
    current.label = {Label("rule", name)};
    current.gauge.value = GradeIndex(rule.grade);

    for (int g = 0; g < kGradeCount; ++g) {
      ClientMetric& one = info.metric.emplace_back();
      one.label = {Label("grade", GradeName(static_cast<Grade>(g))), Label("rule", name)};
      one.gauge.value = g == GradeIndex(rule.grade) ? 1 : 0;
    }

    ClientMetric& held = stale.metric.emplace_back();
    held.label = current.label;
    held.gauge.value = rule.stale ? 1 : 0;
  }

  std::vector<MetricFamily> families;
  AppendUnlessEmpty(families, std::move(grade));
  AppendUnlessEmpty(families, std::move(info));
  AppendUnlessEmpty(families, std::move(stale));
  return families;
}

}  // namespace rollguard
