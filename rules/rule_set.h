// RuleSet: the compiled rules of one configuration and their live state.
//
// Life of a rule: the config loader hands each [rule NAME] section to ParseRuleSection,
// then all definitions with the declared probes to RuleSet::Compile, which checks every
// reference (probe, field, function, dependency) and compiles each condition once. At run
// time the owner calls Record() when a probe reports and Evaluate() for each rule that
// reads it; both take `now` as a value, so the daemon (real clock) and `rollguard test`
// (simulated clock) run this same code.
//
// Time alone can change a grade (a `for` or `recover` elapses, data goes stale, a window
// moves on), so every outcome also says when the rule should next be evaluated without
// new data: the daemon keeps one timer for those moments, so a `for` takes effect when it
// elapses rather than at the next probe result.
//
// Grade semantics (spec §4): the grade is the most severe level whose condition holds,
// failure > critical > warning > good; none holds -> excellent. Conditions of one level
// are OR'ed. Logic is three-valued: a comparison with a missing or stale value is
// unknown and unknown never fires a condition. `COND for D` holds once COND has held at
// every evaluation for at least D. An improving grade must hold for `recover` before it
// is taken. When every probe a rule reads is stale the rule holds its last grade (or
// takes its `no_data` grade) and is marked stale; a stale outcome never runs actions.
//
// Thread-safety: none; the event loop owns a RuleSet.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ini.h"
#include "common/probe_result.h"
#include "common/result.h"
#include "common/time.h"
#include "rules/grade.h"

namespace rollguard {

// One `good = ...` / `critical = ...` line.
struct ConditionSource {
  std::string text;
  SourceLocation where;
};

// One value per grade, indexed by GradeIndex() like an array of kGradeCount, holding only
// the grades that were given one: a rule sets two or three of its fifteen per-grade
// slots (conditions, actions, where its actions were written), and an array of each was
// 360 of a compiled rule's 912 bytes, ~3.6 MB at 10,000 rules (bench/RESULTS.md).
// Reading a grade never given a value gives an empty T (reads never add one: there is no
// non-const operator[]); Edit() gives a grade's value to change, adding it. Iteration
// visits the values given, in grade order.
template <typename T>
class PerGrade {
 public:
  const T& operator[](int grade) const {
    for (const auto& [index, value] : values_) {
      if (index == grade) return value;
    }
    static const T kNone{};
    return kNone;
  }
  T& Edit(int grade) {
    auto at = values_.begin();
    while (at != values_.end() && at->first < grade) ++at;
    if (at == values_.end() || at->first != grade) at = values_.emplace(at, grade, T{});
    return at->second;
  }

  class const_iterator {
   public:
    using Inner = typename std::vector<std::pair<int, T>>::const_iterator;
    explicit const_iterator(Inner inner) : inner_(inner) {}
    const T& operator*() const { return inner_->second; }
    const_iterator& operator++() {
      ++inner_;
      return *this;
    }
    bool operator==(const const_iterator& other) const { return inner_ == other.inner_; }

   private:
    Inner inner_;
  };
  const_iterator begin() const { return const_iterator(values_.begin()); }
  const_iterator end() const { return const_iterator(values_.end()); }

 private:
  std::vector<std::pair<int, T>> values_;  // by grade index, ascending
};

// A [rule NAME] section, parsed but not yet compiled against the probes.
struct RuleDefinition {
  std::string name;
  SourceLocation where;
  // [kExcellent] is always empty (excellent has no condition).
  PerGrade<std::vector<ConditionSource>> conditions;
  // Action names run on entering a grade (on_warning, on_critical, on_failure), in order.
  PerGrade<std::vector<std::string>> actions_on;
  PerGrade<SourceLocation> actions_where;  // the line of each on_<grade> key
  std::vector<std::string> depends;
  // Where each `depends` name was written (parallel to `depends`); entries may be missing
  // for definitions built in code, and errors then point at `where`.
  std::vector<SourceLocation> depends_where;
  std::map<std::string, std::string> labels;  // labels = team=payments service=api
  std::vector<std::string> notify;            // empty = every notifier
  std::string summary;                        // template with {{ expr | filter }}
  SourceLocation summary_where;               // line of `summary`; file empty when unset
  Duration recover{0};
  std::optional<Grade> no_data;  // nullopt = hold the last grade
};

// Parses one [rule NAME] section (kind "rule"). Checks keys, repeatability, durations,
// names, grades and the syntax of every condition. Errors start "file:line: " (or
// "file:line:column: " inside an expression) and say what was expected.
Result<RuleDefinition> ParseRuleSection(const IniSection& section);

// What the rules need to know about a probe.
struct ProbeDeclaration {
  std::string name;
  std::string type;  // a type known to common/probe_types.h
  Duration interval;
  SourceLocation where;
};

// The result of one evaluation.
struct RuleOutcome {
  Grade grade = Grade::kExcellent;     // after this evaluation
  Grade previous = Grade::kExcellent;  // before it
  // False while the rule has never been graded on fresh data (nor restored): `previous`
  // is then only the starting value, not a grade rollguard observed ("none" to users).
  bool previous_known = true;
  bool changed = false;  // grade != previous
  bool stale = false;    // every probe the rule reads is stale
  // Human-readable cause: the condition that decided the grade and the values it saw,
  // e.g. "api.latency > 3s (api.latency=4.2)"; "no condition holds" for excellent;
  // "no fresh data from api, db" when stale; "not better than critical while unknown: ..."
  // when unknown data holds the grade; "holding critical until good has held for 2m
  // (recover)" while recovering.
  std::string reason;
  // First evaluation at which the deciding condition held (before any `for` and
  // `recover`): the start of detection_to_action_seconds.
  TimePoint condition_since{};
  // Set when a rule this one depends on is critical or failure: actions are suppressed.
  std::optional<std::string> held_by;
  // A probe the rule reads reported a configuration error (PromQL bad_data/execution).
  bool config_error = false;
  // When to evaluate the rule again even if no probe reports, because time alone may
  // change this outcome by then: a pending `for` or `recover` elapses, a probe it reads
  // goes stale, a sample leaves a window, age() reaches the value it is compared with.
  // Always later than this evaluation's `now`, so an owner that evaluates at each such
  // moment cannot spin. nullopt when only new data can change the outcome (e.g. every
  // probe the rule reads is stale). Evaluating earlier or more often is harmless.
  std::optional<TimePoint> next_evaluation;
};

// What survives a restart for one rule.
struct RuleSnapshot {
  Grade grade = Grade::kExcellent;
  TimePoint since{};  // when the current grade was entered
};

class RuleSet {
 public:
  // Compiles the definitions against the probes. Errors (all of them, one per line,
  // each with file:line[:column]): unknown probe, field the probe type lacks, unknown
  // function, type mismatch, unknown or cyclic dependency, duplicate rule name.
  static Result<RuleSet> Compile(std::vector<RuleDefinition> rules,
                                 std::vector<ProbeDeclaration> probes);

  RuleSet(RuleSet&&) noexcept;
  RuleSet& operator=(RuleSet&&) noexcept;
  ~RuleSet();

  // Stores a probe result observed at `now` (history is kept as long as the longest
  // window any rule reads on that probe, at least 2x its interval, at most 32768 results).
  // Returns the indices of the rules whose conditions read the probe, dependencies before
  // dependents; the vector lives as long as the RuleSet. Unknown probe: empty.
  const std::vector<size_t>& Record(std::string_view probe, TimePoint now,
                                    const ProbeResult& result);
  // The same by probe index (from FindProbe), without looking the name up: the daemon
  // finds each probe once per configuration, not once per result.
  // REQUIRES: probe is an index FindProbe returned for this RuleSet.
  const std::vector<size_t>& Record(size_t probe, TimePoint now, const ProbeResult& result);
  // The index of probe `probe` for Record; nullopt when the rules were not compiled with it.
  std::optional<size_t> FindProbe(std::string_view probe) const;

  // Evaluates rule `index` at `now` and advances its state. The conditions evaluate
  // without allocating; formatting the outcome's reason may allocate.
  // REQUIRES: index < size(); `now` never decreases between calls.
  RuleOutcome Evaluate(size_t index, TimePoint now);
  // The same, into `outcome`: every field is overwritten, and its strings keep their
  // capacity, so a caller that reuses one outcome for every evaluation allocates nothing
  // when the reason is no longer than one it has held before.
  void Evaluate(size_t index, TimePoint now, RuleOutcome* outcome);

  size_t size() const;
  std::optional<size_t> Find(std::string_view rule_name) const;
  const RuleDefinition& definition(size_t index) const;
  Grade grade(size_t index) const;
  TimePoint grade_since(size_t index) const;
  bool stale(size_t index) const;
  const std::string& reason(size_t index) const;

  // Renders the rule's summary template with the current values ("" when it has none).
  std::string RenderSummary(size_t index, TimePoint now) const;

  // Names of the probes rule `index` reads.
  std::vector<std::string> ProbesRead(size_t index) const;

  // Things that are legal but probably mistakes, found by Compile: a probe no rule reads,
  // a rule with no condition at all. Each starts with "file:line: ".
  const std::vector<std::string>& Warnings() const;

  RuleSnapshot Snapshot(size_t index) const;
  // Resumes a rule's grade after a restart; its probes' data is empty (so it is stale
  // until they report again, and holds the restored grade meanwhile).
  void Restore(size_t index, const RuleSnapshot& snapshot);

 private:
  struct Impl;
  explicit RuleSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard
