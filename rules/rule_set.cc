#include "rules/rule_set.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "common/probe_types.h"
#include "common/strings.h"
#include "rules/expression.h"
#include "rules/program.h"

namespace rollguard {
namespace {

// No probe keeps more samples than this, however short its interval.
constexpr size_t kMaxSamplesPerProbe = 1 << 15;

std::string Quote(std::string_view text) { return "\"" + std::string(text) + "\""; }

struct CompiledCondition {
  Expr expr;
  int level = 0;
  const ConditionSource* source = nullptr;  // in the rule's definition
  // The references and function calls a reason shows with their values ("api.latency"),
  // as written in source->text.
  std::vector<std::pair<int32_t, std::string_view>> shown;
};

struct ConditionState {
  OptionalTime true_since;  // first evaluation of the current true streak
};

struct RuleState {
  Grade grade = Grade::kExcellent;
  bool established = false;  // graded on fresh data, or restored, at least once
  TimePoint since{};
  bool stale = true;
  std::string reason;
  TimePoint condition_since{};
  OptionalTime stale_since;
  // better_since[g]: since when every evaluation allowed a grade of g or better.
  OptionalTime better_since[kGradeCount];
  std::vector<ConditionState> conditions;
};

struct CompiledRule {
  RuleDefinition definition;
  std::vector<CompiledCondition> conditions;
  std::vector<int32_t> probes;  // read by conditions; they decide staleness
  std::vector<int32_t> summary_probes;
  std::vector<size_t> depends;
  std::vector<SummaryPart> summary;
  RuleState state;
};

// REQUIRES: condition->source->text is the text `expr` was parsed from.
void CollectShown(const Expr& expr, int32_t index, CompiledCondition* condition) {
  const ExprNode& node = expr.nodes[index];
  switch (node.op) {
    case ExprOp::kRef:
    case ExprOp::kAvg:
    case ExprOp::kMin:
    case ExprOp::kMax:
    case ExprOp::kQuantile:
    case ExprOp::kRatio:
    case ExprOp::kChanges:
    case ExprOp::kCount:
    case ExprOp::kAge: {
      const std::string_view text =
          std::string_view(condition->source->text).substr(node.begin, node.end - node.begin);
      for (const auto& shown : condition->shown) {
        if (shown.second == text) return;
      }
      condition->shown.emplace_back(index, text);
      return;
    }
    default:
      if (node.lhs >= 0) CollectShown(expr, node.lhs, condition);
      if (node.rhs >= 0) CollectShown(expr, node.rhs, condition);
  }
}

std::string TrimNumber(const char* buffer) {
  std::string out(buffer);
  if (out.find('.') != std::string::npos && out.find('e') == std::string::npos) {
    while (!out.empty() && out.back() == '0') out.pop_back();
    if (!out.empty() && out.back() == '.') out.pop_back();
  }
  return out;
}

// Up to 4 significant digits; large numbers in full ("12345", not "1.234e+04").
std::string FormatNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  if (std::fabs(value) >= 1e4 && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.4g", value);
  }
  return TrimNumber(buffer);
}

// Seconds as people read them: 250ms, 1.5s, 2m3s.
std::string FormatSeconds(double seconds) {
  if (std::isnan(seconds) || std::isinf(seconds)) return FormatNumber(seconds);
  if (seconds < 0) return "-" + FormatSeconds(-seconds);
  char buffer[64];
  if (seconds < 1) {
    std::snprintf(buffer, sizeof buffer, "%.3g", seconds * 1000);
    const std::string ms = TrimNumber(buffer);
    if (ms != "1000") return ms + "ms";
    return "1s";
  }
  if (seconds < 60) {
    std::snprintf(buffer, sizeof buffer, "%.2f", seconds);
    std::string s = TrimNumber(buffer);
    if (s != "60") return s + "s";
  }
  const auto whole = static_cast<int64_t>(std::llround(seconds));
  return FormatDuration(Duration{whole * 1000});
}

}  // namespace

struct RuleSet::Impl {
  std::vector<ProbeData> probes;
  std::map<std::string, size_t, std::less<>> probe_index;
  std::vector<CompiledRule> rules;
  std::vector<std::vector<size_t>> readers;  // per probe, in dependency order
  std::vector<size_t> no_readers;
  std::vector<std::string> warnings;
  std::vector<double> scratch;  // for quantiles; sized in Record so Evaluate never grows it

  // Reasons are written into the rule's own string, which keeps its capacity: most
  // evaluations give the same reason again, and should not allocate to say so.
  void StaleReason(const CompiledRule& rule, std::string* reason) const {
    reason->assign("no fresh data from ");
    for (size_t i = 0; i < rule.probes.size(); ++i) {
      if (i) reason->append(", ");
      reason->append(probes[rule.probes[i]].name);
    }
  }

  void AppendConditionReason(const CompiledCondition& condition, EvalContext& context,
                             std::string* reason) const {
    reason->append(condition.source->text);
    if (condition.shown.empty()) return;
    reason->append(" (");
    for (size_t i = 0; i < condition.shown.size(); ++i) {
      if (i) reason->append(", ");
      reason->append(condition.shown[i].second);
      reason->push_back('=');
      reason->append(
          FormatValue(rollguard::Evaluate(condition.expr, condition.shown[i].first, context)));
    }
    reason->push_back(')');
  }

  void Evaluate(size_t index, TimePoint now, RuleOutcome& outcome);
};

RuleSet::RuleSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RuleSet::RuleSet(RuleSet&&) noexcept = default;
RuleSet& RuleSet::operator=(RuleSet&&) noexcept = default;
RuleSet::~RuleSet() = default;

Result<RuleSet> RuleSet::Compile(std::vector<RuleDefinition> rules,
                                 std::vector<ProbeDeclaration> probes) {
  auto impl = std::make_unique<Impl>();
  std::vector<std::string> errors;
  // Exact sizes: a CompiledRule is about a kilobyte, and growing by doubling left up to
  // half of 10,000 of them allocated and unused for the life of the configuration.
  impl->probes.reserve(probes.size());
  impl->rules.reserve(rules.size());

  for (ProbeDeclaration& declaration : probes) {
    const std::string prefix = declaration.where.ToString() + ": [probe " + declaration.name + "] ";
    const ProbeTypeInfo* type = FindProbeType(declaration.type);
    if (type == nullptr) {
      std::string known;
      for (const ProbeTypeInfo& info : AllProbeTypes()) {
        known += (known.empty() ? "" : ", ") + std::string(info.type);
      }
      errors.push_back(prefix + "type: expected one of " + known + ", got " +
                       Quote(declaration.type));
      continue;
    }
    if (!impl->probe_index.emplace(declaration.name, impl->probes.size()).second) {
      errors.push_back(prefix.substr(0, prefix.size() - 1) +
                       ": expected a unique probe name, got " + declaration.name + " again");
      continue;
    }
    ProbeData data;
    data.name = declaration.name;
    data.type = type;
    data.interval = std::max(declaration.interval, Duration{1});
    data.where = declaration.where;
    impl->probes.push_back(std::move(data));
  }

  std::map<std::string, size_t, std::less<>> rule_index;
  for (RuleDefinition& definition : rules) {
    const auto [it, inserted] = rule_index.emplace(definition.name, impl->rules.size());
    if (!inserted) {
      errors.push_back(definition.where.ToString() + ": [rule " + definition.name +
                       "]: expected a unique rule name, got " + definition.name +
                       " again (first defined at " +
                       impl->rules[it->second].definition.where.ToString() + ")");
      continue;
    }
    CompiledRule rule;
    rule.definition = std::move(definition);
    impl->rules.push_back(std::move(rule));
  }

  for (CompiledRule& rule : impl->rules) {
    const RuleDefinition& definition = rule.definition;
    for (int level = kGradeCount - 1; level > 0; --level) {
      const std::string key(GradeName(static_cast<Grade>(level)));
      for (const ConditionSource& source : definition.conditions[level]) {
        ExprParse parsed = ParseExpression(source.text, /*allow_for=*/true);
        if (!parsed.error) {
          ExprError error;
          if (!BindExpression(&parsed.expr, true, &impl->probes, &rule.probes, &error,
                              &impl->probe_index)) {
            parsed.error = std::move(error);
          }
        }
        if (parsed.error) {
          errors.push_back(ExpressionErrorMessage(source.where.file, source.where.line,
                                                  definition.name, key, source.text,
                                                  parsed.error->offset, parsed.error->message));
          continue;
        }
        CompiledCondition condition;
        condition.expr = std::move(parsed.expr);
        condition.expr.nodes.shrink_to_fit();  // kept as long as the configuration
        KeepLiteralTextsOnly(&condition.expr);
        condition.level = level;
        condition.source = &source;
        CollectShown(condition.expr, condition.expr.root, &condition);
        condition.shown.shrink_to_fit();
        // Only binding and CollectShown read the expression's own copy of its text; the
        // definition keeps the original for as long as the rule lives.
        std::string().swap(condition.expr.source);
        rule.conditions.push_back(std::move(condition));
      }
    }
    rule.conditions.shrink_to_fit();  // 144 bytes each, and 3 of them took room for 4
    if (!definition.summary.empty()) {
      const SourceLocation& where =
          definition.summary_where.file.empty() ? definition.where : definition.summary_where;
      SummaryParse parsed = ParseSummary(definition.summary);
      for (SummaryPart& part : parsed.parts) {
        if (parsed.error || part.expr.nodes.empty()) continue;
        ExprError error;
        if (!BindExpression(&part.expr, false, &impl->probes, &rule.summary_probes, &error,
                            &impl->probe_index)) {
          error.offset += part.offset;
          parsed.error = std::move(error);
          break;
        }
        KeepLiteralTextsOnly(&part.expr);
        const ValueType type = part.expr.nodes[part.expr.root].type;
        if (part.filter != SummaryFilter::kNone &&
            (type == ValueType::kString || type == ValueType::kBool)) {
          parsed.error =
              ExprError{part.offset + part.expr.nodes[part.expr.root].begin,
                        "expected a number before the filter, got " +
                            std::string(type == ValueType::kString ? "a string" : "a condition")};
          break;
        }
      }
      if (parsed.error) {
        errors.push_back(ExpressionErrorMessage(where.file, where.line, definition.name, "summary",
                                                definition.summary, parsed.error->offset,
                                                parsed.error->message));
      } else {
        rule.summary = std::move(parsed.parts);
      }
    }
    for (size_t d = 0; d < definition.depends.size(); ++d) {
      const std::string& name = definition.depends[d];
      const SourceLocation& where =
          d < definition.depends_where.size() ? definition.depends_where[d] : definition.where;
      const auto found = rule_index.find(name);
      if (found == rule_index.end()) {
        errors.push_back(where.ToString() + ": [rule " + definition.name +
                         "] depends: expected a defined rule, got " + Quote(name));
        continue;
      }
      rule.depends.push_back(found->second);
    }
  }

  // Dependency order: depth-first post-order; a back edge is a cycle.
  std::vector<size_t> order;
  std::vector<int> color(impl->rules.size(), 0);  // 0 new, 1 on the path, 2 done
  std::vector<size_t> path;
  auto visit = [&](auto&& self, size_t r) -> void {
    color[r] = 1;
    path.push_back(r);
    const CompiledRule& rule = impl->rules[r];
    for (size_t d = 0; d < rule.depends.size(); ++d) {
      const size_t dep = rule.depends[d];
      if (color[dep] == 1) {
        std::string cycle;
        const auto start = std::find(path.begin(), path.end(), dep);
        for (auto it = start; it != path.end(); ++it) {
          cycle += impl->rules[*it].definition.name + " -> ";
        }
        cycle += impl->rules[dep].definition.name;
        const RuleDefinition& definition = rule.definition;
        const SourceLocation& where =
            d < definition.depends_where.size() ? definition.depends_where[d] : definition.where;
        errors.push_back(where.ToString() + ": [rule " + definition.name +
                         "] depends: expected no dependency cycle, got " + cycle);
      } else if (color[dep] == 0) {
        self(self, dep);
      }
    }
    path.pop_back();
    color[r] = 2;
    order.push_back(r);
  };
  for (size_t r = 0; r < impl->rules.size(); ++r) {
    if (color[r] == 0) visit(visit, r);
  }

  if (!errors.empty()) {
    std::string message;
    for (const std::string& error : errors) message += (message.empty() ? "" : "\n") + error;
    return Fail(std::move(message));
  }

  size_t largest = 0;
  for (ProbeData& probe : impl->probes) {
    // A probe no window reads is only ever read at its latest sample (references,
    // absent(), age()), so its ring keeps that one: 3 slots of 4 samples were ~250 of
    // the bytes each such probe held, 2.4 MB at 10,000 probes (bench/RESULTS.md).
    const bool windowed = probe.retention > Duration::zero();
    probe.retention = std::max(probe.retention, 2 * probe.interval);
    const size_t expected = static_cast<size_t>(probe.retention / probe.interval) + 1;
    const size_t cap = windowed ? std::min(kMaxSamplesPerProbe, 2 * expected + 16) : 1;
    probe.slots.shrink_to_fit();  // complete now, and kept per probe
    probe.history.emplace(probe.slots.size(), probe.retention, cap);
    largest = std::max(largest, cap);
  }
  impl->scratch.reserve(largest);
  impl->readers.resize(impl->probes.size());
  for (size_t r : order) {
    for (int32_t p : impl->rules[r].probes) impl->readers[p].push_back(r);
  }

  for (size_t p = 0; p < impl->probes.size(); ++p) {
    const ProbeData& probe = impl->probes[p];
    if (impl->readers[p].empty()) {
      impl->warnings.push_back(probe.where.ToString() + ": [probe " + probe.name +
                               "] no rule condition reads this probe");
    }
  }
  for (CompiledRule& rule : impl->rules) {
    if (rule.conditions.empty()) {
      impl->warnings.push_back(rule.definition.where.ToString() + ": [rule " +
                               rule.definition.name +
                               "] has no condition (failure, critical, warning or good), so it "
                               "is always excellent");
    }
    rule.state.conditions.resize(rule.conditions.size());
    rule.state.stale = !rule.probes.empty();
    if (rule.state.stale) {
      impl->StaleReason(rule, &rule.state.reason);
    } else {
      rule.state.reason = "no condition holds";
    }
  }
  return RuleSet(std::move(impl));
}

std::optional<size_t> RuleSet::FindProbe(std::string_view probe) const {
  const auto found = impl_->probe_index.find(probe);
  if (found == impl_->probe_index.end()) return std::nullopt;
  return found->second;
}

const std::vector<size_t>& RuleSet::Record(std::string_view probe, TimePoint now,
                                           const ProbeResult& result) {
  const std::optional<size_t> found = FindProbe(probe);
  if (!found) return impl_->no_readers;
  return Record(*found, now, result);
}

const std::vector<size_t>& RuleSet::Record(size_t probe, TimePoint now, const ProbeResult& result) {
  ProbeData& data = impl_->probes[probe];
  data.reported = true;
  data.last_report = now;
  data.config_error = result.config_error;
  Cell* cells = data.history->Append(now);
  for (size_t s = 0; s < data.slots.size(); ++s) {
    Cell& cell = cells[s];
    const std::string& name = data.slots[s];
    if (name == "up") {
      cell.kind = Cell::Kind::kNumber;
      cell.number = result.up ? 1 : 0;
      continue;
    }
    if (name == "latency") {
      cell.kind = Cell::Kind::kNumber;
      cell.number = result.latency_seconds;
      continue;
    }
    const auto field = result.fields.find(name);
    if (field == result.fields.end()) {
      cell.kind = Cell::Kind::kMissing;
    } else if (const double* number = std::get_if<double>(&field->second)) {
      cell.kind = Cell::Kind::kNumber;
      cell.number = *number;
    } else {
      cell.kind = Cell::Kind::kString;
      cell.text = std::get<std::string>(field->second);
    }
  }
  if (impl_->scratch.capacity() < data.history->capacity()) {
    impl_->scratch.reserve(data.history->capacity());
  }
  return impl_->readers[probe];
}

RuleOutcome RuleSet::Evaluate(size_t index, TimePoint now) {
  RuleOutcome outcome;
  impl_->Evaluate(index, now, outcome);
  return outcome;
}

void RuleSet::Evaluate(size_t index, TimePoint now, RuleOutcome* outcome) {
  impl_->Evaluate(index, now, *outcome);
}

// Every field of `outcome` is set, and its strings are assigned rather than rebuilt, so
// an outcome reused from the previous evaluation keeps their capacity.
void RuleSet::Impl::Evaluate(size_t index, TimePoint now, RuleOutcome& outcome) {
  CompiledRule& rule = rules[index];
  RuleState& state = rule.state;
  const RuleDefinition& definition = rule.definition;
  outcome.previous = state.grade;
  outcome.previous_known = state.established;
  outcome.config_error = false;
  outcome.next_evaluation.reset();
  const std::string* held_by = nullptr;
  for (size_t dep : rule.depends) {
    if (IsWorseThan(rules[dep].state.grade, Grade::kWarning)) {
      held_by = &rules[dep].definition.name;
      break;
    }
  }
  if (held_by != nullptr) {
    outcome.held_by = *held_by;
  } else {
    outcome.held_by.reset();
  }
  bool any_fresh = rule.probes.empty();
  for (int32_t p : rule.probes) {
    if (probes[p].reported && probes[p].config_error) outcome.config_error = true;
    if (probes[p].Fresh(now)) any_fresh = true;
  }

  // The earliest moment after `now` at which time alone may change this outcome.
  TimePoint next_change = TimePoint::max();
  auto note = [&](TimePoint at) {
    if (at > now && at < next_change) next_change = at;
  };
  auto finish = [&](Grade grade) {
    if (grade != state.grade) state.since = now;
    state.grade = grade;
    outcome.grade = grade;
    outcome.changed = grade != outcome.previous;
    outcome.stale = state.stale;
    outcome.reason = state.reason;
    outcome.condition_since = state.condition_since;
    if (next_change != TimePoint::max()) outcome.next_evaluation = next_change;
  };

  if (!any_fresh) {
    // Data we do not have decides nothing: streaks end, the grade holds (or no_data).
    if (!state.stale_since) state.stale_since = now;
    for (ConditionState& condition : state.conditions) condition.true_since.reset();
    for (auto& since : state.better_since) since.reset();
    state.stale = true;
    StaleReason(rule, &state.reason);
    if (definition.no_data) {
      state.condition_since = *state.stale_since;
      finish(*definition.no_data);
      return;
    }
    finish(state.grade);
    return;
  }
  state.stale_since.reset();
  state.stale = false;
  state.established = true;
  // Each probe going stale turns its references unknown, and the last one the rule stale.
  for (int32_t p : rule.probes) {
    if (probes[p].Fresh(now)) note(probes[p].StaleAt());
  }

  EvalContext context{&probes, now, &scratch};
  context.next_change = &next_change;
  int first_true[kGradeCount] = {-1, -1, -1, -1, -1};
  int first_unknown[kGradeCount] = {-1, -1, -1, -1, -1};
  for (size_t c = 0; c < rule.conditions.size(); ++c) {
    const CompiledCondition& condition = rule.conditions[c];
    ConditionState& condition_state = state.conditions[c];
    Truth truth = EvaluateTruth(condition.expr, condition.expr.root, context);
    if (truth == Truth::kTrue) {
      if (!condition_state.true_since) condition_state.true_since = now;
      if (condition.expr.for_duration &&
          now - *condition_state.true_since < *condition.expr.for_duration) {
        truth = Truth::kFalse;  // pending: not yet held for D
        note(*condition_state.true_since + *condition.expr.for_duration);
      }
    } else {
      condition_state.true_since.reset();
    }
    const int level = condition.level;
    if (truth == Truth::kTrue && first_true[level] < 0) first_true[level] = static_cast<int>(c);
    if (truth == Truth::kUnknown && first_unknown[level] < 0) {
      first_unknown[level] = static_cast<int>(c);
    }
  }
  int computed = 0;     // most severe level that holds
  int pessimistic = 0;  // most severe level that holds or might
  for (int level = kGradeCount - 1; level > 0; --level) {
    if (pessimistic == 0 && (first_true[level] >= 0 || first_unknown[level] >= 0)) {
      pessimistic = level;
    }
    if (computed == 0 && first_true[level] >= 0) computed = level;
  }

  for (int g = 0; g < kGradeCount; ++g) {
    if (pessimistic <= g) {
      if (!state.better_since[g]) state.better_since[g] = now;
    } else {
      state.better_since[g].reset();
    }
  }
  const int current = GradeIndex(state.grade);
  int next = current;
  if (computed > current) {
    next = computed;  // worsening is immediate
  } else if (pessimistic < current) {
    for (int g = 0; g < current; ++g) {
      if (state.better_since[g] && now - *state.better_since[g] >= definition.recover) {
        next = g;
        break;
      }
    }
  }
  // A better grade not held for `recover` yet is taken once it has.
  for (int g = 0; g < next; ++g) {
    if (state.better_since[g]) note(*state.better_since[g] + definition.recover);
  }
  // Reasons read values again; what they read was noted above.
  context.next_change = nullptr;

  if (first_true[next] >= 0) {
    const CompiledCondition& condition = rule.conditions[first_true[next]];
    state.reason.clear();
    AppendConditionReason(condition, context, &state.reason);
    state.condition_since = *state.conditions[first_true[next]].true_since;
  } else if (next == 0 && pessimistic == 0) {
    state.reason = "no condition holds";
    state.condition_since = next == current ? state.since : now;
  } else if (pessimistic >= next) {
    const int level = pessimistic;
    const CompiledCondition& condition = rule.conditions[first_unknown[level]];
    state.reason.assign("not better than ");
    state.reason.append(GradeName(static_cast<Grade>(next)));
    state.reason.append(" while unknown: ");
    AppendConditionReason(condition, context, &state.reason);
  } else {
    state.reason = "holding " + std::string(GradeName(static_cast<Grade>(next))) + " until " +
                   std::string(GradeName(static_cast<Grade>(pessimistic))) + " has held for " +
                   FormatDuration(definition.recover) + " (recover)";
  }
  finish(static_cast<Grade>(next));
}

size_t RuleSet::size() const { return impl_->rules.size(); }

std::optional<size_t> RuleSet::Find(std::string_view rule_name) const {
  for (size_t i = 0; i < impl_->rules.size(); ++i) {
    if (impl_->rules[i].definition.name == rule_name) return i;
  }
  return std::nullopt;
}

const RuleDefinition& RuleSet::definition(size_t index) const {
  return impl_->rules[index].definition;
}
Grade RuleSet::grade(size_t index) const { return impl_->rules[index].state.grade; }
TimePoint RuleSet::grade_since(size_t index) const { return impl_->rules[index].state.since; }
bool RuleSet::stale(size_t index) const { return impl_->rules[index].state.stale; }
const std::string& RuleSet::reason(size_t index) const { return impl_->rules[index].state.reason; }

std::string RuleSet::RenderSummary(size_t index, TimePoint now) const {
  const CompiledRule& rule = impl_->rules[index];
  EvalContext context{&impl_->probes, now, &impl_->scratch};
  std::string out;
  for (const SummaryPart& part : rule.summary) {
    if (part.expr.nodes.empty()) {
      out += part.literal;
      continue;
    }
    const Value value = rollguard::Evaluate(part.expr, part.expr.root, context);
    if (value.kind == Value::Kind::kUnknown) {
      out += "n/a";
    } else if (value.kind == Value::Kind::kString) {
      out += value.text;
    } else if (part.expr.nodes[part.expr.root].type == ValueType::kBool) {
      out += value.number != 0 ? "true" : "false";
    } else {
      switch (part.filter) {
        case SummaryFilter::kPercent:
          out += FormatNumber(value.number * 100) + "%";
          break;
        case SummaryFilter::kDuration:
          out += FormatSeconds(value.number);
          break;
        case SummaryFilter::kNumber:
          out += FormatNumber(value.number);
          break;
        case SummaryFilter::kNone:
          out += FormatValue(value);
          break;
      }
    }
  }
  return out;
}

std::vector<std::string> RuleSet::ProbesRead(size_t index) const {
  std::vector<std::string> names;
  for (int32_t p : impl_->rules[index].probes) names.push_back(impl_->probes[p].name);
  return names;
}

const std::vector<std::string>& RuleSet::Warnings() const { return impl_->warnings; }

RuleSnapshot RuleSet::Snapshot(size_t index) const {
  const RuleState& state = impl_->rules[index].state;
  return RuleSnapshot{state.grade, state.since};
}

void RuleSet::Restore(size_t index, const RuleSnapshot& snapshot) {
  CompiledRule& rule = impl_->rules[index];
  RuleState& state = rule.state;
  state.grade = snapshot.grade;
  state.established = true;
  state.since = snapshot.since;
  state.condition_since = snapshot.since;
  state.stale = !rule.probes.empty();
  state.stale_since.reset();
  for (ConditionState& condition : state.conditions) condition.true_since.reset();
  for (auto& since : state.better_since) since.reset();
  state.reason = "restored " + std::string(GradeName(snapshot.grade)) + " after a restart";
}

}  // namespace rollguard
