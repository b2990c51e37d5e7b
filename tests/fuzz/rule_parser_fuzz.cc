// libFuzzer target for the rule language: whatever bytes a user (or an editor crash)
// leaves in a rule file, rollguard must answer with an error or a rule set, never crash,
// hang, leak or invoke undefined behaviour.
//
// Each input is used three ways:
//   1. as one expression (ParseExpression, with and without `for`), and on a syntax error
//      the caret message is formatted as `rollguard check` would;
//   2. as a summary template (ParseSummary);
//   3. as a rule file: parsed as INI, every [rule NAME] section through ParseRuleSection,
//      then compiled against six declared probes of every kind; a rule set that compiles
//      is fed results (up, down, strings, NaN) over simulated time and evaluated, and its
//      summaries rendered, so binding and evaluation are fuzzed along with parsing.
//
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined (tests/fuzz/
// CMakeLists.txt); the seed corpus is tests/fuzz/corpus/rule_parser/.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/ini.h"
#include "common/probe_result.h"
#include "rules/expression.h"
#include "rules/rule_set.h"

namespace rollguard {
namespace {

using namespace std::chrono_literals;

std::vector<ProbeDeclaration> Probes() {
  return {
      {"api", "http", 10s, {"probes.rules", 1}},    {"db", "postgres", 15s, {"probes.rules", 2}},
      {"prom", "promql", 30s, {"probes.rules", 3}}, {"svc", "systemd", 10s, {"probes.rules", 4}},
      {"job", "exec", 1min, {"probes.rules", 5}},   {"port", "tcp", 5s, {"probes.rules", 6}},
  };
}

// The result probe `name` reports at step `step`: varied so conditions flip, fields go
// missing, strings and NaN appear.
ProbeResult ResultFor(const std::string& name, int step) {
  ProbeResult result;
  result.up = step % 4 != 3;
  result.latency_seconds = 0.05 * (step % 7);
  if (!result.up) {
    result.error = "simulated failure";
    return result;
  }
  result.fields["status"] = step % 5 == 2 ? 503.0 : 200.0;
  result.fields["body_bytes"] = 1024.0 * step;
  result.fields["value"] = step % 6 == 5 ? std::nan("") : 0.01 * step;
  result.fields["min"] = 0.0;
  result.fields["max"] = 1.0 * step;
  result.fields["count"] = static_cast<double>(step % 3);
  result.fields["state"] = name == "job" ? FieldValue{static_cast<double>(step % 4)}
                                         : FieldValue{step % 2 ? "active" : "failed"};
  result.fields["restarts"] = static_cast<double>(step / 3);
  result.fields["json.errors"] = 0.02 * (step % 5);
  result.fields["json.status"] = step % 3 ? "ok" : "degraded";
  result.fields["json.a.b"] = step % 2 ? FieldValue{1.0} : FieldValue{"x"};
  result.fields["perf.time"] = 0.001 * step;
  return result;
}

void FuzzRuleFile(std::string_view text) {
  auto document = ParseIni(text, "fuzz.rules");
  if (!document) return;
  std::vector<RuleDefinition> rules;
  for (const IniSection& section : document->sections) {
    if (section.kind != "rule") continue;
    auto rule = ParseRuleSection(section);
    if (!rule) return;
    rules.push_back(std::move(*rule));
  }
  if (rules.empty()) return;
  auto compiled = RuleSet::Compile(std::move(rules), Probes());
  if (!compiled) return;
  RuleSet& set = *compiled;
  (void)set.Warnings();
  const std::vector<ProbeDeclaration> probes = Probes();
  for (int step = 0; step < 24; ++step) {
    const TimePoint now = TimePoint{} + step * 5s;
    for (const ProbeDeclaration& probe : probes) {
      // Probes fall silent for a while (stale data) from step 12 to 17.
      if (step >= 12 && step < 18 && probe.name != "port") continue;
      if ((now.time_since_epoch() % probe.interval).count() != 0) continue;
      for (size_t index : set.Record(probe.name, now, ResultFor(probe.name, step))) {
        (void)set.Evaluate(index, now);
      }
    }
    for (size_t i = 0; i < set.size(); ++i) {
      (void)set.Evaluate(i, now);
      (void)set.RenderSummary(i, now);
      (void)set.reason(i);
    }
  }
}

}  // namespace
}  // namespace rollguard

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rollguard;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool allow_for : {true, false}) {
    const ExprParse parsed = ParseExpression(text, allow_for);
    if (parsed.error) {
      (void)ExpressionErrorMessage("fuzz.rules", 3, "api", "critical", text, parsed.error->offset,
                                   parsed.error->message);
    }
  }
  (void)ParseSummary(text);
  FuzzRuleFile(text);
  return 0;
}
