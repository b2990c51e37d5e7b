// Prometheus servers the promql probes query: the [prometheus] and [prometheus NAME]
// sections of the main config (spec §2).
//
// Keys: url (http:// or https:// base URL of the server, e.g. http://127.0.0.1:9090 or
// https://prom.example/prometheus; the probe appends /api/v1/query), timeout (default 5s:
// the longest a query may take; it is sent to Prometheus as the query's `timeout`
// parameter and bounds the HTTP request, together with the probe's own timeout, whichever
// is shorter), bearer_token_file (optional: the token is sent as "Authorization: Bearer";
// env:NAME works too, like every *_file secret).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/ini.h"
#include "common/time.h"

namespace rollguard {

struct PrometheusServer {
  std::string name;  // "" for the unnamed [prometheus], the default server
  std::string url;   // without a trailing '/'
  Duration timeout = std::chrono::seconds(5);
  std::string bearer_token;  // secret; empty when none. Never logged.
  SourceLocation where;
};

// Parses one [prometheus] or [prometheus NAME] section. Relative bearer_token_file paths
// resolve against `base_directory`. Errors ("file:line: [prometheus] url: expected ...")
// are appended to `errors`; nullopt when there were any.
std::optional<PrometheusServer> ParsePrometheusSection(const IniSection& section,
                                                       const std::string& base_directory,
                                                       std::vector<std::string>* errors);

}  // namespace rollguard
