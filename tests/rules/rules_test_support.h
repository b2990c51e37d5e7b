// Helpers for the rules tests: rule files from text, probe results, time as values.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "common/strings.h"
#include "rules/rule_set.h"

namespace rollguard::testing {

using namespace std::chrono_literals;

inline TimePoint At(Duration d) { return TimePoint{} + d; }

// api (http), db (postgres), prom (promql), svc (systemd), job (exec); all every 10s.
inline std::vector<ProbeDeclaration> StandardProbes() {
  return {
      {"api", "http", 10s, {"probes.conf", 1}},    {"db", "postgres", 10s, {"probes.conf", 5}},
      {"prom", "promql", 10s, {"probes.conf", 9}}, {"svc", "systemd", 10s, {"probes.conf", 13}},
      {"job", "exec", 10s, {"probes.conf", 17}},
  };
}

// Parses every section of `text` (as the file "test.rules") with ParseRuleSection.
inline Result<std::vector<RuleDefinition>> ParseRules(std::string_view text) {
  auto document = ParseIni(text, "test.rules");
  if (!document) return document.error();
  std::vector<RuleDefinition> rules;
  for (const IniSection& section : document->sections) {
    auto rule = ParseRuleSection(section);
    if (!rule) return rule.error();
    rules.push_back(std::move(*rule));
  }
  return rules;
}

inline Result<RuleSet> CompileRules(std::string_view text,
                                    std::vector<ProbeDeclaration> probes = StandardProbes()) {
  auto rules = ParseRules(text);
  if (!rules) return rules.error();
  return RuleSet::Compile(std::move(*rules), std::move(probes));
}

inline RuleSet MustCompile(std::string_view text,
                           std::vector<ProbeDeclaration> probes = StandardProbes()) {
  auto rules = CompileRules(text, std::move(probes));
  if (!rules) FAIL(rules.error().message);
  return std::move(*rules);
}

// The error from parsing or compiling `text`; fails the test when there is none.
inline std::string ErrorOf(std::string_view text,
                           std::vector<ProbeDeclaration> probes = StandardProbes()) {
  auto rules = CompileRules(text, std::move(probes));
  if (rules) FAIL("expected an error from:\n" << text);
  return rules.error().message;
}

inline ProbeResult Up(std::map<std::string, FieldValue> fields = {}, double latency = 0.05) {
  ProbeResult result;
  result.up = true;
  result.latency_seconds = latency;
  result.fields = std::move(fields);
  return result;
}

inline ProbeResult Down(std::map<std::string, FieldValue> fields = {}, double latency = 1.0) {
  ProbeResult result;
  result.up = false;
  result.latency_seconds = latency;
  result.error = "connection refused";
  result.fields = std::move(fields);
  return result;
}

// Records a result and evaluates every rule that reads the probe, as the daemon does.
inline void Report(RuleSet& rules, std::string_view probe, TimePoint now,
                   const ProbeResult& result) {
  const std::vector<size_t> readers = rules.Record(probe, now, result);
  for (size_t index : readers) (void)rules.Evaluate(index, now);
}

inline RuleOutcome EvaluateRule(RuleSet& rules, std::string_view name, TimePoint now) {
  const auto index = rules.Find(name);
  REQUIRE(index.has_value());
  return rules.Evaluate(*index, now);
}

inline Grade GradeOf(const RuleSet& rules, std::string_view name) {
  const auto index = rules.Find(name);
  REQUIRE(index.has_value());
  return rules.grade(*index);
}

// What one condition evaluates to, seen from outside: a rule `critical = condition` is
// critical when it is true, explains "no condition holds" when false, and refuses to
// improve ("not better than ...") when unknown.
enum class Tri { kFalse, kTrue, kUnknown, kStale };

inline std::ostream& operator<<(std::ostream& out, Tri tri) {
  const char* names[] = {"false", "true", "unknown", "stale"};
  return out << names[static_cast<int>(tri)];
}

inline Tri Holds(const std::string& condition, std::optional<ProbeResult> api = Up(),
                 std::optional<ProbeResult> db = std::nullopt) {
  RuleSet rules = MustCompile("[rule t]\ncritical = " + condition + "\n");
  if (api) rules.Record("api", At(0s), *api);
  if (db) rules.Record("db", At(0s), *db);
  const RuleOutcome outcome = rules.Evaluate(0, At(0s));
  if (outcome.stale) return Tri::kStale;
  if (outcome.grade == Grade::kCritical) return Tri::kTrue;
  if (StartsWith(outcome.reason, "not better than")) return Tri::kUnknown;
  if (outcome.reason == "no condition holds") return Tri::kFalse;
  FAIL("unexpected outcome: " << GradeName(outcome.grade) << " / " << outcome.reason);
  return Tri::kStale;
}

}  // namespace rollguard::testing
