// ParseProbeSection (the keys every type has, then the type's own) and ProbeContext.
#include <memory>
#include <string>
#include <string_view>

#include "common/probe_types.h"
#include "common/strings.h"
#include "probes/curl_multi.h"
#include "probes/exec_probe.h"
#include "probes/http_probe.h"
#include "probes/plain_http.h"
#include "probes/postgres_probe.h"
#include "probes/probe.h"
#include "probes/probe_keys.h"
#include "probes/promql_probe.h"
#include "probes/redis_probe.h"
#include "probes/systemd_probe.h"
#include "probes/tcp_probe.h"

namespace rollguard {
namespace {

// One entry per probe type built into this binary; a new type adds its file and a line
// here. Types in common/probe_types.h without an entry are reported as not available yet.
using TypeParser = std::shared_ptr<const ProbeConfig> (*)(ProbeSpec spec, ProbeKeys& keys);
struct TypeParserEntry {
  std::string_view type;
  TypeParser parse;
};
constexpr TypeParserEntry kTypeParsers[] = {
    {"http", &ParseHttpProbe},       {"tcp", &ParseTcpProbe},   {"postgres", &ParsePostgresProbe},
    {"redis", &ParseRedisProbe},     {"exec", &ParseExecProbe}, {"promql", &ParsePromqlProbe},
    {"systemd", &ParseSystemdProbe},
};

TypeParser FindParser(std::string_view type) {
  for (const TypeParserEntry& entry : kTypeParsers) {
    if (entry.type == type) return entry.parse;
  }
  return nullptr;
}

bool IsLabelName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

void ParseLabels(ProbeKeys& keys, ProbeSpec& spec) {
  const IniEntry* entry = keys.Single("labels");
  if (entry == nullptr) return;
  for (const std::string& word : SplitWords(entry->value)) {
    const size_t equals = word.find('=');
    const std::string name = word.substr(0, equals == std::string::npos ? 0 : equals);
    if (equals == std::string::npos || !IsLabelName(name) || equals + 1 == word.size()) {
      keys.ErrorAt(*entry,
                   "expected key=value pairs separated by spaces (keys like "
                   "[a-zA-Z_][a-zA-Z0-9_]*), got " +
                       Quoted(word));
      return;
    }
    if (!spec.labels.emplace(name, word.substr(equals + 1)).second) {
      keys.ErrorAt(*entry, "expected each label once, got " + Quoted(name) + " twice");
      return;
    }
  }
}

std::string TypeList() {
  std::string list;
  for (const ProbeTypeInfo& info : AllProbeTypes()) {
    list += (list.empty() ? "" : ", ") + std::string(info.type);
  }
  return list;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string joined;
  for (const std::string& line : lines) joined += (joined.empty() ? "" : "\n") + line;
  return joined;
}

}  // namespace

Result<std::shared_ptr<const ProbeConfig>> ParseProbeSection(const IniSection& section,
                                                             const ProbeParseContext& context) {
  ProbeKeys keys(section, context);
  if (!IsValidName(section.name)) {
    keys.Error("expected a probe name matching [a-z][a-z0-9_]*, got " + Quoted(section.name));
    return Fail(JoinLines(keys.errors()));
  }

  ProbeSpec spec;
  spec.name = section.name;
  spec.where = section.where;

  const IniEntry* type = keys.Required("type");
  if (type == nullptr) return Fail(JoinLines(keys.errors()));
  spec.type = type->value;
  const TypeParser parse = FindParser(spec.type);
  if (parse == nullptr) {
    if (FindProbeType(spec.type) != nullptr) {
      keys.ErrorAt(*type,
                   "probe type " + Quoted(spec.type) + " is not available in this build yet");
    } else {
      keys.ErrorAt(*type, "expected one of " + TypeList() + ", got " + Quoted(spec.type));
    }
    return Fail(JoinLines(keys.errors()));
  }

  const IniEntry* interval_entry = keys.Single("interval");
  const IniEntry* timeout_entry = keys.Single("timeout");
  spec.interval = keys.DurationAt(interval_entry, spec.interval);
  spec.timeout = keys.DurationAt(timeout_entry, spec.timeout);
  ParseLabels(keys, spec);
  if (spec.interval <= Duration::zero() && interval_entry != nullptr) {
    keys.ErrorAt(*interval_entry,
                 "expected a duration above 0, got " + Quoted(interval_entry->value));
  } else if (spec.timeout <= Duration::zero() && timeout_entry != nullptr) {
    keys.ErrorAt(*timeout_entry,
                 "expected a duration above 0, got " + Quoted(timeout_entry->value));
  } else if (spec.timeout >= spec.interval) {
    const std::string message = "expected timeout (" + FormatDuration(spec.timeout) +
                                ") less than interval (" + FormatDuration(spec.interval) + ")";
    if (timeout_entry != nullptr) {
      keys.ErrorAt(*timeout_entry, message + ", got " + Quoted(timeout_entry->value));
    } else if (interval_entry != nullptr) {
      keys.ErrorAt(*interval_entry, message + ", got " + Quoted(interval_entry->value));
    } else {
      keys.Error(message);
    }
  }

  std::shared_ptr<const ProbeConfig> config = parse(std::move(spec), keys);
  keys.CheckUnknown();
  if (keys.has_errors() || config == nullptr) return Fail(JoinLines(keys.errors()));
  return config;
}

ProbeContext::ProbeContext(sd_event* event) : event_(event) {}

ProbeContext::~ProbeContext() = default;

CurlMulti& ProbeContext::curl() {
  if (curl_ == nullptr) curl_ = std::make_unique<CurlMulti>(event_);
  return *curl_;
}

PlainHttp& ProbeContext::plain_http() {
  if (plain_http_ == nullptr) plain_http_ = std::make_unique<PlainHttp>(event_);
  return *plain_http_;
}

}  // namespace rollguard
