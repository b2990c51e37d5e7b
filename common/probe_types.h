// What each probe type reports (spec §3), shared by the rule compiler (which checks
// references against it) and the probes (which fill the fields).
#pragma once

#include <string_view>
#include <vector>

namespace rollguard {

struct ProbeTypeInfo {
  std::string_view type;                         // "http", "tcp", ...
  std::string_view primary_field;                // used when a rule names the probe bare
  std::vector<std::string_view> fields;          // fixed fields, primary first; includes up/latency
  std::vector<std::string_view> field_prefixes;  // open families: "json.", "perf.", "phase."
  std::vector<std::string_view> string_fields;   // fields whose values are strings
};

// nullptr for an unknown type.
const ProbeTypeInfo* FindProbeType(std::string_view type);

// All known types, in spec order (for error messages: "expected one of ...").
const std::vector<ProbeTypeInfo>& AllProbeTypes();

// True when `field` is a fixed field of the type or starts with one of its prefixes.
bool ProbeTypeHasField(const ProbeTypeInfo& info, std::string_view field);

}  // namespace rollguard
