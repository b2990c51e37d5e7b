#include "probes/prometheus_server.h"

#include "common/strings.h"
#include "probes/probe.h"
#include "probes/probe_keys.h"

namespace rollguard {

std::optional<PrometheusServer> ParsePrometheusSection(const IniSection& section,
                                                       const std::string& base_directory,
                                                       std::vector<std::string>* errors) {
  const ProbeParseContext context{base_directory};
  ProbeKeys keys(section, context);
  PrometheusServer server;
  server.name = section.name;
  server.where = section.where;
  if (!section.name.empty() && !IsValidName(section.name)) {
    keys.Error("expected a server name matching [a-z][a-z0-9_]*, got " + Quoted(section.name));
  }
  if (const IniEntry* url = keys.Required("url")) {
    std::string_view text = Trim(url->value);
    const bool http = StartsWith(text, "http://") || StartsWith(text, "https://");
    const size_t scheme_end = text.find("://");
    if (!http || text.size() <= scheme_end + 3 || text.find_first_of("?# ") != std::string::npos) {
      keys.ErrorAt(*url,
                   "expected an http:// or https:// base URL like http://127.0.0.1:9090 "
                   "(no query or fragment), got " +
                       Quoted(url->value));
    } else {
      while (EndsWith(text, "/")) text.remove_suffix(1);
      server.url = std::string(text);
    }
  }
  const IniEntry* timeout = keys.Single("timeout");
  server.timeout = keys.DurationAt(timeout, server.timeout);
  if (timeout != nullptr && server.timeout <= Duration::zero()) {
    keys.ErrorAt(*timeout, "expected a duration above 0, got " + Quoted(timeout->value));
  }
  if (std::optional<std::string> token = keys.Secret("bearer_token_file")) {
    server.bearer_token = *token;
  }
  keys.CheckUnknown();
  for (const std::string& error : keys.errors()) errors->push_back(error);
  if (keys.has_errors()) return std::nullopt;
  return server;
}

}  // namespace rollguard
