#include "daemon/probe_metrics.h"

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <sstream>

namespace rollguard {
namespace {

ProbeSpec Spec(const std::string& name, const std::string& type) {
  ProbeSpec spec;
  spec.name = name;
  spec.type = type;
  return spec;
}

ProbeResult Up(double latency, std::map<std::string, FieldValue> fields) {
  ProbeResult result;
  result.up = true;
  result.latency_seconds = latency;
  result.fields = std::move(fields);
  return result;
}

ProbeResult Down(double latency) {
  ProbeResult result;
  result.latency_seconds = latency;
  result.error = "connection refused";
  return result;
}

std::string Text(const std::vector<prometheus::MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

// Every sample line, in exposition order.
std::vector<std::string> Samples(const std::vector<prometheus::MetricFamily>& families) {
  std::vector<std::string> lines;
  std::istringstream in(Text(families));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

// The value of the sample whose name and labels are exactly `series`, or nullopt.
std::optional<std::string> Sample(const std::vector<prometheus::MetricFamily>& families,
                                  const std::string& series) {
  for (const std::string& line : Samples(families)) {
    if (line.compare(0, series.size() + 1, series + " ") == 0)
      return line.substr(series.size() + 1);
  }
  return std::nullopt;
}

// The sample lines that contain `text`.
std::vector<std::string> SamplesWith(const std::vector<prometheus::MetricFamily>& families,
                                     const std::string& text) {
  std::vector<std::string> found;
  for (const std::string& line : Samples(families)) {
    if (line.find(text) != std::string::npos) found.push_back(line);
  }
  return found;
}

TEST_CASE(
    "probe metrics: a down result leaves no probe_value series, the next answer restores them",
    "[probe_metrics]") {
  ProbeMetrics metrics;
  const ProbeSpec api = Spec("api", "http");
  metrics.Record(api, Up(0.01, {{"status", 200.0}, {"body_bytes", 12.0}, {"state", "ok"}}));
  CHECK(Sample(metrics.Collect(), "rollguard_probe_value{field=\"status\",probe=\"api\"}") ==
        "200");
  CHECK(Sample(metrics.Collect(), "rollguard_probe_value{field=\"body_bytes\",probe=\"api\"}") ==
        "12");
  CHECK(SamplesWith(metrics.Collect(), "field=\"state\"").empty());  // strings are not values

  metrics.Record(api, Down(0.5));
  CHECK(Sample(metrics.Collect(), "rollguard_probe_success{probe=\"api\",type=\"http\"}") == "0");
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value").empty());
  // A family without series is left out, HELP and TYPE included.
  CHECK(Text(metrics.Collect()).find("rollguard_probe_value") == std::string::npos);

  metrics.Record(api, Up(0.01, {{"status", 503.0}, {"body_bytes", 12.0}}));
  CHECK(Sample(metrics.Collect(), "rollguard_probe_success{probe=\"api\",type=\"http\"}") == "1");
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value") ==
        std::vector<std::string>{"rollguard_probe_value{field=\"body_bytes\",probe=\"api\"} 12",
                                 "rollguard_probe_value{field=\"status\",probe=\"api\"} 503"});
}

TEST_CASE("probe metrics: probe_value holds exactly the last result's fields as they change",
          "[probe_metrics]") {
  ProbeMetrics metrics;
  const ProbeSpec q = Spec("q", "promql");
  metrics.Record(q, Up(0.01, {{"a", 1.0}, {"b", 2.0}, {"c", 3.0}}));
  metrics.Record(q, Up(0.01, {{"a", 10.0}, {"c", 30.0}}));
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value") ==
        std::vector<std::string>{"rollguard_probe_value{field=\"a\",probe=\"q\"} 10",
                                 "rollguard_probe_value{field=\"c\",probe=\"q\"} 30"});
  metrics.Record(q, Up(0.01, {{"b", 2.5}, {"d", 4.0}}));
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value") ==
        std::vector<std::string>{"rollguard_probe_value{field=\"b\",probe=\"q\"} 2.5",
                                 "rollguard_probe_value{field=\"d\",probe=\"q\"} 4"});
  // A field that became a string is no longer a value.
  metrics.Record(q, Up(0.01, {{"b", "n/a"}, {"d", 5.0}}));
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value") ==
        std::vector<std::string>{"rollguard_probe_value{field=\"d\",probe=\"q\"} 5"});
}

TEST_CASE("probe metrics: a reload drops removed probes and probes whose type changed",
          "[probe_metrics]") {
  ProbeMetrics metrics;
  metrics.Record(Spec("api", "http"), Up(0.01, {{"status", 200.0}}));
  metrics.Record(Spec("db", "tcp"), Up(0.002, {{"connect_seconds", 0.001}}));
  metrics.Record(Spec("cache", "redis"), Up(0.003, {{"ping", 1.0}}));

  metrics.Retain({{"db", "tcp"}, {"cache", "exec"}});  // api removed, cache retyped
  CHECK(SamplesWith(metrics.Collect(), "probe=\"api\"").empty());
  CHECK(SamplesWith(metrics.Collect(), "probe=\"cache\"").empty());
  // The survivor keeps its values.
  CHECK(Sample(metrics.Collect(), "rollguard_probe_success{probe=\"db\",type=\"tcp\"}") == "1");
  CHECK(Sample(metrics.Collect(),
               "rollguard_probe_duration_seconds_count{probe=\"db\",type=\"tcp\"}") == "1");
  CHECK(Sample(metrics.Collect(),
               "rollguard_probe_value{field=\"connect_seconds\",probe=\"db\"}") == "0.001");

  // The retyped probe starts over with its first report under the new type.
  metrics.Record(Spec("cache", "exec"), Up(0.004, {}));
  CHECK(Sample(metrics.Collect(),
               "rollguard_probe_duration_seconds_count{probe=\"cache\",type=\"exec\"}") == "1");
  CHECK(SamplesWith(metrics.Collect(), "type=\"redis\"").empty());

  metrics.Retain({});
  CHECK(metrics.Collect().empty());
}

TEST_CASE("probe metrics: probes share one copy of each name, kept while one uses it",
          "[probe_metrics]") {
  ProbeMetrics metrics;
  const std::string first_byte = "phase.first_byte";  // longer than std::string holds inline
  for (const char* name : {"a", "b", "c"}) {
    metrics.Record(Spec(name, "http"), Up(0.01, {{first_byte, 0.002}, {"status", 200.0}}));
  }
  CHECK(metrics.shared_name_count() == 3);  // http, phase.first_byte, status

  // A renamed field holds its new name; the old one stays while another probe uses it.
  metrics.Record(Spec("a", "http"), Up(0.01, {{"phase.connect", 0.001}, {"status", 200.0}}));
  CHECK(metrics.shared_name_count() == 4);
  // A down run keeps the names of its slots for the next up run.
  metrics.Record(Spec("b", "http"), Down(0.5));
  CHECK(metrics.shared_name_count() == 4);
  CHECK(SamplesWith(metrics.Collect(), "rollguard_probe_value") ==
        std::vector<std::string>{
            "rollguard_probe_value{field=\"phase.connect\",probe=\"a\"} 0.001",
            "rollguard_probe_value{field=\"status\",probe=\"a\"} 200",
            "rollguard_probe_value{field=\"phase.first_byte\",probe=\"c\"} 0.002",
            "rollguard_probe_value{field=\"status\",probe=\"c\"} 200"});

  // A reload that removes b and retypes c: their names go unless a remains a user.
  metrics.Retain({{"a", "http"}, {"c", "tcp"}});
  CHECK(metrics.shared_name_count() == 3);  // http, phase.connect, status
  metrics.Record(Spec("c", "tcp"), Up(0.01, {{first_byte, 0.003}}));
  CHECK(metrics.shared_name_count() == 5);
  CHECK(Sample(metrics.Collect(), "rollguard_probe_success{probe=\"c\",type=\"tcp\"}") == "1");
  CHECK(Sample(metrics.Collect(),
               "rollguard_probe_value{field=\"phase.first_byte\",probe=\"c\"}") == "0.003");
  CHECK(Sample(metrics.Collect(), "rollguard_probe_success{probe=\"a\",type=\"http\"}") == "1");

  metrics.Retain({});
  CHECK(metrics.shared_name_count() == 0);
  CHECK(metrics.Collect().empty());
}

TEST_CASE("probe metrics: the duration histogram counts a latency on a bound in that bucket",
          "[probe_metrics]") {
  ProbeMetrics metrics;
  const ProbeSpec api = Spec("api", "http");
  for (double latency : {0.001, 0.003, 0.2, 45.0}) metrics.Record(api, Up(latency, {}));
  const auto families = metrics.Collect();
  const std::string bucket = "rollguard_probe_duration_seconds_bucket{probe=\"api\",type=\"http\",";
  CHECK(Sample(families, bucket + "le=\"0.001\"}") == "1");
  CHECK(Sample(families, bucket + "le=\"0.0025\"}") == "1");
  CHECK(Sample(families, bucket + "le=\"0.005\"}") == "2");
  CHECK(Sample(families, bucket + "le=\"0.25\"}") == "3");
  CHECK(Sample(families, bucket + "le=\"30\"}") == "3");
  CHECK(Sample(families, bucket + "le=\"+Inf\"}") == "4");
  CHECK(Sample(families, "rollguard_probe_duration_seconds_count{probe=\"api\",type=\"http\"}") ==
        "4");
  const auto sum =
      Sample(families, "rollguard_probe_duration_seconds_sum{probe=\"api\",type=\"http\"}");
  REQUIRE(sum);
  CHECK(std::stod(*sum) == Approx(45.204));
}

// What the same reports make of prometheus-cpp's own families, the way rollguard kept them
// before: the exposition must not have changed.
class FamilyReference {
 public:
  void Record(const ProbeSpec& probe, const ProbeResult& result) {
    const prometheus::Labels labels = {{"probe", probe.name}, {"type", probe.type}};
    success_.Add(labels).Set(result.up ? 1 : 0);
    duration_
        .Add(labels, prometheus::Histogram::BucketBoundaries(ProbeMetrics::kDurationBuckets.begin(),
                                                             ProbeMetrics::kDurationBuckets.end()))
        .Observe(result.latency_seconds);
    for (prometheus::Gauge* gauge : values_[probe.name]) value_.Remove(gauge);
    values_[probe.name].clear();
    for (const auto& [field, value] : result.fields) {
      if (const double* number = std::get_if<double>(&value)) {
        prometheus::Gauge& gauge = value_.Add({{"probe", probe.name}, {"field", field}});
        gauge.Set(*number);
        values_[probe.name].push_back(&gauge);
      }
    }
  }

  std::vector<prometheus::MetricFamily> Collect() const { return registry_->Collect(); }

 private:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Gauge>& success_ =
      prometheus::BuildGauge()
          .Name("rollguard_probe_success")
          .Help("1 when the probe's last run was up, else 0.")
          .Register(*registry_);
  prometheus::Family<prometheus::Histogram>& duration_ =
      prometheus::BuildHistogram()
          .Name("rollguard_probe_duration_seconds")
          .Help("How long probe runs took, in seconds.")
          .Register(*registry_);
  prometheus::Family<prometheus::Gauge>& value_ =
      prometheus::BuildGauge()
          .Name("rollguard_probe_value")
          .Help("The last numeric value of each probe field.")
          .Register(*registry_);
  std::map<std::string, std::vector<prometheus::Gauge*>> values_;
};

// Every line of an exposition, sorted: prometheus-cpp lists a family's series in hash order.
std::vector<std::string> SortedLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

TEST_CASE("probe metrics: the exposition is what prometheus-cpp's families wrote",
          "[probe_metrics]") {
  ProbeMetrics metrics;
  FamilyReference reference;
  const ProbeSpec api = Spec("api", "http");
  const ProbeSpec odd = Spec("we\"ird\\name\n", "exec");
  const std::vector<std::pair<const ProbeSpec*, ProbeResult>> reports = {
      {&api, Up(0.0123, {{"status", 200.0}, {"json.errors", 0.001}, {"body", "x"}})},
      {&odd, Up(1e-7, {{"perf.time", 1.5e12}, {"negative", -0.25}})},
      {&api, Down(0.5)},
      {&odd, Up(31.0, {{"perf.time", 2.0}})},
      {&api, Up(0.0025, {{"status", 503.0}})},
  };
  for (const auto& [probe, result] : reports) {
    metrics.Record(*probe, result);
    reference.Record(*probe, result);
    CHECK(SortedLines(Text(metrics.Collect())) == SortedLines(Text(reference.Collect())));
  }
  // Families come in the order the registry had them.
  const std::string text = Text(metrics.Collect());
  CHECK(text.find("# TYPE rollguard_probe_success gauge") <
        text.find("# TYPE rollguard_probe_duration_seconds histogram"));
  CHECK(text.find("# TYPE rollguard_probe_duration_seconds histogram") <
        text.find("# TYPE rollguard_probe_value gauge"));
}

TEST_CASE("rule metrics: configured rules have every series, evaluations move them",
          "[probe_metrics]") {
  RuleMetrics metrics;
  RuleMetrics::ConfiguredRule api;
  api.name = "api";
  RuleMetrics::ConfiguredRule db;
  db.name = "db";
  db.grade = Grade::kWarning;
  db.stale = false;
  metrics.Configure({api, db});
  CHECK(Sample(metrics.Collect(), "rollguard_rule_grade{rule=\"api\"}") == "0");
  CHECK(Sample(metrics.Collect(), "rollguard_rule_stale{rule=\"api\"}") == "1");
  CHECK(Sample(metrics.Collect(), "rollguard_rule_grade{rule=\"db\"}") == "2");
  CHECK(Sample(metrics.Collect(), "rollguard_rule_grade_info{grade=\"warning\",rule=\"db\"}") ==
        "1");

  metrics.Record("api", Grade::kCritical, false);
  CHECK(Sample(metrics.Collect(), "rollguard_rule_grade{rule=\"api\"}") == "3");
  CHECK(Sample(metrics.Collect(), "rollguard_rule_stale{rule=\"api\"}") == "0");
  for (const char* grade : {"excellent", "good", "warning", "critical", "failure"}) {
    INFO(grade);
    CHECK(Sample(metrics.Collect(),
                 "rollguard_rule_grade_info{grade=\"" + std::string(grade) + "\",rule=\"api\"}") ==
          (std::string(grade) == "critical" ? "1" : "0"));
  }

  // An evaluation of a rule the configuration lacks makes no series.
  metrics.Record("gone", Grade::kFailure, false);
  CHECK(SamplesWith(metrics.Collect(), "rule=\"gone\"").empty());

  // A reload that drops api removes all seven of its series; db keeps its grade.
  metrics.Configure({db});
  CHECK(SamplesWith(metrics.Collect(), "rule=\"api\"").empty());
  CHECK(Sample(metrics.Collect(), "rollguard_rule_grade{rule=\"db\"}") == "2");
  CHECK(SamplesWith(metrics.Collect(), "rule=\"db\"").size() == 7);
  metrics.Configure({});
  CHECK(metrics.Collect().empty());
}

}  // namespace
}  // namespace rollguard
