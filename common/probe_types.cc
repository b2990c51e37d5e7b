#include "common/probe_types.h"

namespace rollguard {

const std::vector<ProbeTypeInfo>& AllProbeTypes() {
  static const std::vector<ProbeTypeInfo> kTypes = {
      {"http",
       "up",
       {"up", "latency", "status", "body_bytes", "cert_expiry"},
       {"json.", "phase."},
       {}},
      {"tcp", "up", {"up", "latency"}, {}, {}},
      {"postgres", "up", {"up", "latency", "value"}, {}, {}},
      {"redis", "up", {"up", "latency", "value"}, {}, {}},
      {"promql", "value", {"value", "up", "latency", "min", "max", "sum", "count"}, {}, {}},
      {"exec", "state", {"state", "up", "latency"}, {"perf."}, {}},
      {"systemd", "up", {"up", "state", "restarts", "latency"}, {}, {"state"}},
  };
  return kTypes;
}

const ProbeTypeInfo* FindProbeType(std::string_view type) {
  for (const ProbeTypeInfo& info : AllProbeTypes()) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

bool ProbeTypeHasField(const ProbeTypeInfo& info, std::string_view field) {
  for (std::string_view fixed : info.fields) {
    if (fixed == field) return true;
  }
  for (std::string_view prefix : info.field_prefixes) {
    if (field.size() > prefix.size() && field.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

}  // namespace rollguard
