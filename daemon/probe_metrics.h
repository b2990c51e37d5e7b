// ProbeMetrics and RuleMetrics: the metrics rollguard keeps per probe and per rule
// (spec §7), held as small plain structs and turned into Prometheus families only when
// /metrics is scraped.
//
//   probe_success{probe,type}            1 when the last run was up, else 0
//   probe_duration_seconds{probe,type}   histogram of run latencies, 1ms .. 30s buckets
//   probe_value{field,probe}             the last result's numeric fields, and only those
//   rule_grade{rule}                     0 excellent .. 4 failure
//   rule_grade_info{grade,rule}          1 for the current grade, 0 for the other four
//   rule_stale{rule}                     1 while every probe the rule reads is stale
//
// Why not prometheus-cpp's Family: it keeps every series as its own object with its own
// label map, and Family::Remove scans the whole family. probe_value mirrors the last
// result, so a probe flapping between up (fields) and down (none) removed and re-added
// series on every report: at 10,000 probes that scan was 17% of the daemon's CPU. Here a
// report costs O(its fields) and, once a probe has reported its usual fields, allocates
// nothing; a scrape costs O(series).
//
// Collect() returns what prometheus::Collectable::Collect would: families in the order
// above, series sorted by probe (then field) or rule name, labels in name order as
// prometheus-cpp writes them; a family without series is left out.
//
// Threads: Record, Retain and Configure belong to the event loop; Collect and
// shared_name_count may run on any thread at the same time (one mutex per object, held
// for a report or a whole scrape).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/probe_result.h"
#include "common/shared_names.h"
#include "probes/probe.h"
#include "rules/grade.h"

namespace prometheus {
struct MetricFamily;
}

namespace rollguard {

class ProbeMetrics {
 public:
  // The upper bounds of probe_duration_seconds' buckets, in seconds (+Inf follows). Runs
  // last from a millisecond (loopback TCP) to their timeout, and more than 30s is not a
  // sensible health check.
  static constexpr std::array<double, 14> kDurationBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

  // `probe` reported `result`. Its series appear with its first report; probe_value then
  // holds exactly the result's numeric fields (strings are not values, and a field the
  // result lacks, as every field of a down run, has no series).
  void Record(const ProbeSpec& probe, const ProbeResult& result);

  // A configuration took effect. `type_by_name` holds every configured probe; the series
  // of any other probe, and of a probe whose type changed, disappear. The others keep
  // their values.
  void Retain(const std::map<std::string, std::string, std::less<>>& type_by_name);

  std::vector<prometheus::MetricFamily> Collect() const;

  // How many distinct field names and types are held: each once, however many probes
  // use it, and none that no probe uses any more.
  size_t shared_name_count() const;

 private:
  struct NumericField {
    const std::string* name = nullptr;  // in names_
    double value = 0;
  };
  struct Probe {
    const std::string* type = nullptr;  // in names_: "http", "tcp", ...
    // [0, field_count) are the last result's fields. The entries after them keep their
    // names for the next result, so a probe that flaps allocates nothing.
    std::vector<NumericField> fields;
    double duration_sum = 0;
    // Observations per bucket (not cumulative); the last one is +Inf.
    std::array<uint64_t, kDurationBuckets.size() + 1> duration_counts{};
    // Last and side by side, they share 8 bytes: a probe's map node 248 -> 216 bytes.
    uint32_t field_count = 0;
    bool up = false;
  };

  mutable std::mutex mutex_;
  // Every field name and type probes_ points to (common/shared_names.h). With 10,000
  // http probes, a copy per probe of names longer than std::string holds inline was a
  // heap block each; with the 40-byte fields that held them, 1.6 MB in all. Shared, with
  // 16-byte fields and the smaller Probe above, ProbeMetrics went 4.47 -> 2.88 MB.
  SharedNames names_;
  std::unordered_map<std::string, Probe, NameHash, std::equal_to<>> probes_;
};

class RuleMetrics {
 public:
  struct ConfiguredRule {
    std::string_view name;
    Grade grade = Grade::kExcellent;  // as restored from the state file, or excellent
    bool stale = true;
  };

  // A configuration took effect: exactly `rules` have series from now on, at the given
  // grade and staleness; the series of every other rule disappear.
  void Configure(const std::vector<ConfiguredRule>& rules);

  // An evaluation of `rule`. A rule the running configuration lacks is ignored.
  void Record(std::string_view rule, Grade grade, bool stale);

  std::vector<prometheus::MetricFamily> Collect() const;

 private:
  struct Rule {
    Grade grade = Grade::kExcellent;
    bool stale = true;
  };

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Rule, NameHash, std::equal_to<>> rules_;
};

}  // namespace rollguard
