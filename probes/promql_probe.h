// The `promql` probe type (spec §3): one instant query against a Prometheus server.
//
// Keys: server (the name of a [prometheus NAME] section; default: the unnamed
// [prometheus]), query (PromQL; long queries may use indented continuation lines).
//
// Each run POSTs the query, form-encoded, to <url>/api/v1/query on the shared CurlMulti
// (with the server's bearer token, and `timeout` = the shorter of the server's and the
// probe's timeout, which also bounds the HTTP request).
//
// Fields: value, up, latency, min, max, sum, count.
//   * scalar: value = min = max = sum = the scalar, count 1.
//   * instant vector: count = number of samples; value = the single sample, or the max
//     over samples; min/max ignore NaN samples unless every sample is NaN (as PromQL's
//     min/max do); sum adds them all (a NaN sample makes it NaN, as PromQL's sum does).
//     An empty vector: count 0, and value/min/max/sum are absent (a rule reading them sees
//     missing data, never 0). up is 1 either way: the query succeeded.
//   * NaN, +Inf and -Inf (sent as strings) are values like any other.
// Failures (up 0, `error` says which):
//   * errorType bad_data or execution (a query that cannot work: a syntax error, a
//     many-to-many match, ...), and a query returning a range vector or a string: also
//     `config_error = true` — notified, never leading to an action (spec §4);
//   * errorType timeout, unavailable, canceled, internal and any other; HTTP errors
//     without a Prometheus error document; connection errors; timeouts; a body that is not
//     Prometheus JSON or exceeds kPromqlMaxBodyBytes: a failed probe.
#pragma once

#include <cstddef>
#include <memory>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

inline constexpr size_t kPromqlMaxBodyBytes = size_t{8} << 20;

// Reads the promql keys of a section whose common keys are in `spec`; the servers come
// from the parse context. Errors go to `keys`; nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParsePromqlProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
