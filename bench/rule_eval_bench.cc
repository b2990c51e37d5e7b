// Micro-benchmark: how many compiled rule conditions rollguard evaluates per second.
//
// The condition is a typical three-term one, as an SRE writes it for an HTTP service:
//
//   api.status >= 500 or api.latency > 2s or api.json.errors > 5%
//
// It is compiled by the rules library exactly as the daemon compiles it, against one
// http probe with a realistic history, and evaluated with the same EvaluateTruth the daemon
// calls. The data makes the first two terms false and the third true, so every evaluation
// reads all three fields (the most work this condition can take).
//
// Beside it, in the same run: the same condition as a hand-written C++ lambda over the same
// probe history, with the same three-valued logic (a missing or stale value is unknown).
// That is the ceiling an interpreter can approach; the ratio shows what the generality of
// the compiled form costs. A full RuleSet::Evaluate of a rule with this condition (grade,
// `for`/`recover` state, reason text) is printed for context: it is what one probe report
// costs the daemon per rule that reads it.
//
// Not a test: `make bench-rules` builds it optimised and runs it.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "common/ini.h"
#include "common/probe_types.h"
#include "rules/expression.h"
#include "rules/program.h"
#include "rules/rule_set.h"

namespace rollguard {
namespace {

constexpr const char* kCondition = "api.status >= 500 or api.latency > 2s or api.json.errors > 5%";
// `--quick` (make bench-smoke) measures once, briefly: a check that it still runs.
int rounds = 5;
double round_seconds = 0.4;

// Keeps the compiler from proving a result unused or a load redundant (as Google
// Benchmark's DoNotOptimize / ClobberMemory do).
template <typename T>
inline void KeepResult(T const& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

// This thread's CPU time in seconds: rates are per core even on a machine shared with
// other work (wall time would count the time other processes ran instead).
double ThreadSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// Runs `body` (which does `batch` evaluations) for about round_seconds of CPU time,
// rounds times; returns the best rate in evaluations per CPU-second.
double BestRate(const std::function<void(int)>& body) {
  constexpr int kBatch = 4096;
  double best = 0;
  for (int round = 0; round < rounds; ++round) {
    const double start = ThreadSeconds();
    int64_t done = 0;
    double elapsed = 0;
    do {
      body(kBatch);
      done += kBatch;
      elapsed = ThreadSeconds() - start;
    } while (elapsed < round_seconds);
    best = std::max(best, static_cast<double>(done) / elapsed);
  }
  return best;
}

void Fail(const std::string& what) {
  std::fprintf(stderr, "rule_eval_bench: %s\n", what.c_str());
  std::exit(1);
}

int Main() {
  using namespace std::chrono_literals;
  const Duration interval = 10s;

  // --- The compiled condition, bound to one http probe with 30 results of history.
  std::vector<ProbeData> probes(1);
  probes[0].name = "api";
  probes[0].type = FindProbeType("http");
  probes[0].interval = interval;
  ExprParse parsed = ParseExpression(kCondition, /*allow_for=*/true);
  if (parsed.error) Fail("parse: " + parsed.error->message);
  std::vector<int32_t> read;
  ExprError error;
  if (!BindExpression(&parsed.expr, true, &probes, &read, &error)) Fail("bind: " + error.message);
  ProbeData& api = probes[0];
  api.retention = std::chrono::duration_cast<Duration>(5min);
  api.history.emplace(api.slots.size(), api.retention, 64);
  TimePoint now{};
  for (int i = 0; i < 30; ++i) {
    now = TimePoint{} + i * interval;
    Cell* cells = api.history->Append(now);
    for (size_t s = 0; s < api.slots.size(); ++s) {
      cells[s].kind = Cell::Kind::kNumber;
      if (api.slots[s] == "status") cells[s].number = 200;
      if (api.slots[s] == "latency") cells[s].number = 0.120;
      if (api.slots[s] == "json.errors") cells[s].number = 0.08;
    }
    api.reported = true;
    api.last_report = now;
  }
  std::vector<double> scratch;
  scratch.reserve(64);
  EvalContext context{&probes, now, &scratch};
  if (EvaluateTruth(parsed.expr, parsed.expr.root, context) != Truth::kTrue) {
    Fail("the compiled condition should hold on the benchmark data");
  }
  const double compiled = BestRate([&](int batch) {
    for (int i = 0; i < batch; ++i) {
      KeepResult(EvaluateTruth(parsed.expr, parsed.expr.root, context));
    }
  });

  // --- The ceiling: the same condition written by hand against the same history.
  int status_slot = -1, latency_slot = -1, errors_slot = -1;
  for (size_t s = 0; s < api.slots.size(); ++s) {
    if (api.slots[s] == "status") status_slot = static_cast<int>(s);
    if (api.slots[s] == "latency") latency_slot = static_cast<int>(s);
    if (api.slots[s] == "json.errors") errors_slot = static_cast<int>(s);
  }
  const auto compare = [](const Cell& cell, bool (*holds)(double)) {
    if (cell.kind != Cell::Kind::kNumber) return Truth::kUnknown;
    return holds(cell.number) ? Truth::kTrue : Truth::kFalse;
  };
  const auto hand_written = [&](const ProbeData& probe, TimePoint at) {
    if (!probe.Fresh(at) || probe.history->size() == 0) return Truth::kUnknown;
    const Cell* latest = probe.history->cells(probe.history->size() - 1);
    const Truth terms[3] = {
        compare(latest[status_slot], [](double v) { return v >= 500; }),
        compare(latest[latency_slot], [](double v) { return v > 2.0; }),
        compare(latest[errors_slot], [](double v) { return v > 0.05; }),
    };
    bool unknown = false;
    for (Truth term : terms) {
      if (term == Truth::kTrue) return Truth::kTrue;
      unknown = unknown || term == Truth::kUnknown;
    }
    return unknown ? Truth::kUnknown : Truth::kFalse;
  };
  if (hand_written(api, now) != Truth::kTrue) Fail("the hand-written condition should hold");
  const double ceiling = BestRate([&](int batch) {
    for (int i = 0; i < batch; ++i) {
      KeepResult(hand_written(api, now));
      asm volatile("" : : : "memory");  // re-read the history each time, as the daemon would
    }
  });

  // --- Context: a whole rule evaluation (grade, state, reason) through the public API.
  auto document =
      ParseIni(std::string("[rule api]\ncritical = ") + kCondition + "\n", "bench.rules");
  if (!document) Fail(document.error().message);
  auto definition = ParseRuleSection(document->sections.front());
  if (!definition) Fail(definition.error().message);
  std::vector<RuleDefinition> definitions;
  definitions.push_back(std::move(*definition));
  auto rules = RuleSet::Compile(std::move(definitions), {{"api", "http", interval, {"bench", 1}}});
  if (!rules) Fail(rules.error().message);
  ProbeResult result;
  result.up = true;
  result.latency_seconds = 0.120;
  result.fields = {{"status", 200.0}, {"json.errors", 0.08}};
  TimePoint rule_now{};
  for (int i = 0; i < 30; ++i) {
    rule_now = TimePoint{} + i * interval;
    rules->Record("api", rule_now, result);
    rules->Evaluate(0, rule_now);
  }
  if (rules->grade(0) != Grade::kCritical) Fail("the rule should be critical");
  const double whole_rule = BestRate([&](int batch) {
    for (int i = 0; i < batch; ++i) KeepResult(rules->Evaluate(0, rule_now).grade);
  });

  std::printf("condition: %s\n", kCondition);
  std::printf("%-44s %14s %10s\n", "", "evals/s/core", "ns/eval");
  std::printf("%-44s %14.0f %10.1f\n", "compiled condition (rules/program.h)", compiled,
              1e9 / compiled);
  std::printf("%-44s %14.0f %10.1f\n", "hand-written C++ lambda (ceiling)", ceiling, 1e9 / ceiling);
  std::printf("%-44s %14.0f %10.1f\n", "whole rule: RuleSet::Evaluate (with reason)", whole_rule,
              1e9 / whole_rule);
  std::printf("compiled / hand-written: %.2f (%.1fx slower than the ceiling)\n", compiled / ceiling,
              ceiling / compiled);
  std::printf("target: > 5000000 compiled evaluations/s/core: %s\n",
              compiled > 5e6 ? "met" : "NOT MET");
  return 0;
}

}  // namespace
}  // namespace rollguard

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--quick") {
    rollguard::rounds = 1;
    rollguard::round_seconds = 0.02;
  }
  return rollguard::Main();
}
