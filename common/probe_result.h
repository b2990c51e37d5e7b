// What a probe reports: the data every rule reads.
//
// A failed probe is data, not an exception: up = false with an error text. Field names
// are the ones the spec lists per probe type ("status", "body_bytes", "value",
// "json.a.b", "perf.time", ...); `up` and `latency` are members, not map entries, because
// every probe has them.
#pragma once

#include <map>
#include <string>
#include <variant>

namespace rollguard {

// Numbers (bools as 1/0) or strings, as probe fields and rule literals are.
using FieldValue = std::variant<double, std::string>;

struct ProbeResult {
  bool up = false;
  double latency_seconds = 0;
  std::string error;  // set when !up; for logs and Slack, never secret-bearing
  std::map<std::string, FieldValue> fields;
  // A PromQL answer of errorType bad_data/execution: a configuration error. It is
  // notified but never leads to an action (spec §4).
  bool config_error = false;
};

}  // namespace rollguard
