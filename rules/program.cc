#include "rules/program.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace rollguard {
namespace {

std::string Quote(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool IsNumeric(ValueType type) { return type == ValueType::kNumber || type == ValueType::kAny; }
bool IsConditional(ValueType type) { return type != ValueType::kString; }

std::string_view TypeName(ValueType type) {
  switch (type) {
    case ValueType::kNumber:
      return "a number";
    case ValueType::kBool:
      return "a condition";
    case ValueType::kString:
      return "a string";
    case ValueType::kAny:
      return "a field";
  }
  return "a value";
}

std::string_view OperatorName(ExprOp op) {
  switch (op) {
    case ExprOp::kNeg:
      return "unary -";
    case ExprOp::kAdd:
      return "+";
    case ExprOp::kSub:
      return "-";
    case ExprOp::kMul:
      return "*";
    case ExprOp::kDiv:
      return "/";
    case ExprOp::kEq:
      return "==";
    case ExprOp::kNe:
      return "!=";
    case ExprOp::kLt:
      return "<";
    case ExprOp::kLe:
      return "<=";
    case ExprOp::kGt:
      return ">";
    case ExprOp::kGe:
      return ">=";
    case ExprOp::kAnd:
      return "and";
    case ExprOp::kOr:
      return "or";
    case ExprOp::kNot:
      return "not";
    default:
      return "?";
  }
}

std::string FieldList(const ProbeTypeInfo& info) {
  std::string out;
  for (std::string_view field : info.fields) {
    if (!out.empty()) out += ", ";
    out += field;
  }
  for (std::string_view prefix : info.field_prefixes) {
    out += ", ";
    out += prefix;
    out += "<path>";
  }
  return out;
}

class Binder {
 public:
  Binder(Expr* expr, std::vector<ProbeData>* probes, std::vector<int32_t>* probes_read,
         ExprError* error, const ProbeIndex* probe_index)
      : expr_(expr),
        probes_(probes),
        probes_read_(probes_read),
        error_(error),
        probe_index_(probe_index) {}

  std::optional<ValueType> Bind(int32_t index) {
    ExprNode& node = expr_->nodes[index];
    switch (node.op) {
      case ExprOp::kNumber:
        return node.type = ValueType::kNumber;
      case ExprOp::kBool:
        return node.type = ValueType::kBool;
      case ExprOp::kString:
        return node.type = ValueType::kString;
      case ExprOp::kRef:
        return BindRef(index);
      case ExprOp::kNeg: {
        const auto operand = Bind(node.lhs);
        if (!operand) return std::nullopt;
        if (!IsNumeric(*operand)) return Mismatch(node.lhs, "a number after unary -", *operand);
        return Set(index, ValueType::kNumber);
      }
      case ExprOp::kNot: {
        const auto operand = Bind(node.lhs);
        if (!operand) return std::nullopt;
        if (!IsConditional(*operand)) return Mismatch(node.lhs, "a condition after not", *operand);
        return Set(index, ValueType::kBool);
      }
      case ExprOp::kAdd:
      case ExprOp::kSub:
      case ExprOp::kMul:
      case ExprOp::kDiv:
      case ExprOp::kLt:
      case ExprOp::kLe:
      case ExprOp::kGt:
      case ExprOp::kGe: {
        const bool arithmetic = node.op == ExprOp::kAdd || node.op == ExprOp::kSub ||
                                node.op == ExprOp::kMul || node.op == ExprOp::kDiv;
        const std::string op(OperatorName(node.op));
        const auto lhs = Bind(node.lhs);
        if (!lhs) return std::nullopt;
        const auto rhs = Bind(expr_->nodes[index].rhs);
        if (!rhs) return std::nullopt;
        const ExprNode& bound = expr_->nodes[index];
        for (auto [side, type] : {std::pair{bound.lhs, *lhs}, std::pair{bound.rhs, *rhs}}) {
          if (IsNumeric(type)) continue;
          const std::string where = side == bound.lhs ? "left" : "right";
          if (type == ValueType::kString && !arithmetic) {
            return Fail(side, "expected a number on the " + where + " of " + op +
                                  " (strings compare only with == and !=), got a string");
          }
          return Mismatch(side, "a number on the " + where + " of " + op, type);
        }
        return Set(index, arithmetic ? ValueType::kNumber : ValueType::kBool);
      }
      case ExprOp::kEq:
      case ExprOp::kNe: {
        const auto lhs = Bind(node.lhs);
        if (!lhs) return std::nullopt;
        const auto rhs = Bind(expr_->nodes[index].rhs);
        if (!rhs) return std::nullopt;
        const ExprNode& bound = expr_->nodes[index];
        const bool lhs_string = *lhs == ValueType::kString;
        const bool rhs_string = *rhs == ValueType::kString;
        const bool lhs_any = *lhs == ValueType::kAny;
        const bool rhs_any = *rhs == ValueType::kAny;
        if (lhs_string != rhs_string && !lhs_any && !rhs_any) {
          return Fail(bound.rhs, "expected " + std::string(lhs_string ? "a string" : "a number") +
                                     " on the right of " + std::string(OperatorName(bound.op)) +
                                     " (as on its left), got " + std::string(TypeName(*rhs)));
        }
        return Set(index, ValueType::kBool);
      }
      case ExprOp::kAnd:
      case ExprOp::kOr: {
        const auto lhs = Bind(node.lhs);
        if (!lhs) return std::nullopt;
        const auto rhs = Bind(expr_->nodes[index].rhs);
        if (!rhs) return std::nullopt;
        const ExprNode& bound = expr_->nodes[index];
        const std::string op(OperatorName(bound.op));
        if (!IsConditional(*lhs))
          return Mismatch(bound.lhs, "a condition on the left of " + op, *lhs);
        if (!IsConditional(*rhs))
          return Mismatch(bound.rhs, "a condition on the right of " + op, *rhs);
        return Set(index, ValueType::kBool);
      }
      case ExprOp::kAvg:
      case ExprOp::kMin:
      case ExprOp::kMax:
      case ExprOp::kQuantile:
      case ExprOp::kChanges:
      case ExprOp::kCount:
      case ExprOp::kAbsent:
        return BindFieldFunction(index);
      case ExprOp::kRatio:
        return BindRatio(index);
      case ExprOp::kAge:
        return BindAge(index);
    }
    return std::nullopt;
  }

 private:
  std::optional<ValueType> Set(int32_t index, ValueType type) {
    expr_->nodes[index].type = type;
    return type;
  }

  std::nullopt_t Fail(int32_t index, std::string message) {
    *error_ = {expr_->nodes[index].begin, std::move(message)};
    return std::nullopt;
  }
  std::nullopt_t Fail(size_t offset, std::string message) {
    *error_ = {offset, std::move(message)};
    return std::nullopt;
  }

  std::nullopt_t Mismatch(int32_t index, const std::string& expected, ValueType got) {
    return Fail(index, "expected " + expected + ", got " + std::string(TypeName(got)));
  }

  std::string Spelled(int32_t index) const {
    const ExprNode& node = expr_->nodes[index];
    return expr_->source.substr(node.begin, node.end - node.begin);
  }

  std::optional<int32_t> FindProbe(std::string_view name, size_t offset) {
    size_t begin = 0;
    size_t end = probes_->size();
    if (probe_index_ != nullptr) {
      const auto found = probe_index_->find(name);
      begin = found == probe_index_->end() ? end : static_cast<size_t>(found->second);
      end = std::min(end, begin + 1);
    }
    for (size_t p = begin; p < end; ++p) {
      if ((*probes_)[p].name == name) {
        if (ratio_probe_ != -2) {
          if (ratio_probe_ >= 0 && ratio_probe_ != static_cast<int32_t>(p)) {
            Fail(offset, "expected a condition on one probe inside ratio() (it reads " +
                             (*probes_)[ratio_probe_].name + "), got a reference to " +
                             std::string(name));
            return std::nullopt;
          }
          ratio_probe_ = static_cast<int32_t>(p);
        }
        if (std::find(probes_read_->begin(), probes_read_->end(), p) == probes_read_->end()) {
          probes_read_->push_back(static_cast<int32_t>(p));
        }
        return static_cast<int32_t>(p);
      }
    }
    std::string known;
    for (const ProbeData& probe : *probes_) known += (known.empty() ? "" : ", ") + probe.name;
    Fail(offset, "expected a declared probe (" + (known.empty() ? "none declared" : known) +
                     "), got " + Quote(name));
    return std::nullopt;
  }

  std::optional<ValueType> BindRef(int32_t index) {
    ExprNode& node = expr_->nodes[index];
    const std::string& text = expr_->Text(node);
    const size_t dot = text.find('.');
    const std::string_view probe_name = std::string_view(text).substr(0, dot);
    const auto probe = FindProbe(probe_name, node.begin);
    if (!probe) return std::nullopt;
    ProbeData& data = (*probes_)[*probe];
    const std::string field =
        dot == std::string::npos ? std::string(data.type->primary_field) : text.substr(dot + 1);
    if (!ProbeTypeHasField(*data.type, field)) {
      return Fail(node.begin + dot + 1, "expected a field of " + std::string(data.type->type) +
                                            " probe " + data.name + " (" + FieldList(*data.type) +
                                            "), got " + Quote(field));
    }
    auto slot = std::find(data.slots.begin(), data.slots.end(), field);
    if (slot == data.slots.end()) slot = data.slots.insert(data.slots.end(), field);
    node.probe = *probe;
    node.slot = static_cast<int32_t>(slot - data.slots.begin());
    ValueType type = ValueType::kNumber;
    if (std::find(data.type->string_fields.begin(), data.type->string_fields.end(), field) !=
        data.type->string_fields.end()) {
      type = ValueType::kString;
    } else if (field.rfind("json.", 0) == 0) {
      type = ValueType::kAny;
    }
    return node.type = type;
  }

  bool RejectInsideRatio(int32_t index) {
    if (ratio_probe_ == -2) return false;
    Fail(index, "expected a condition on one probe's fields inside ratio(), got " +
                    expr_->Text(expr_->nodes[index]) + "()");
    return true;
  }

  void Retain(int32_t probe, Duration window) {
    ProbeData& data = (*probes_)[probe];
    data.retention = std::max(data.retention, window);
  }

  std::optional<ValueType> BindFieldFunction(int32_t index) {
    if (RejectInsideRatio(index)) return std::nullopt;
    const ExprNode& node = expr_->nodes[index];
    const std::string name = expr_->Text(node);
    if (expr_->nodes[node.lhs].op != ExprOp::kRef) {
      return Fail(node.lhs,
                  "expected a probe or probe field like api.latency as the argument "
                  "of " +
                      name + "(), got " + Quote(Spelled(node.lhs)));
    }
    const auto field_type = Bind(node.lhs);
    if (!field_type) return std::nullopt;
    ExprNode& bound = expr_->nodes[index];
    const ExprNode& field = expr_->nodes[bound.lhs];
    bound.probe = field.probe;
    bound.slot = field.slot;
    if (bound.op != ExprOp::kAbsent) Retain(bound.probe, bound.window);
    const bool numeric_only = bound.op == ExprOp::kAvg || bound.op == ExprOp::kMin ||
                              bound.op == ExprOp::kMax || bound.op == ExprOp::kQuantile;
    if (numeric_only && *field_type == ValueType::kString) {
      return Fail(bound.lhs, "expected a numeric field as the argument of " + name +
                                 "(), got the string field " + Quote(expr_->Text(field)));
    }
    return bound.type = bound.op == ExprOp::kAbsent ? ValueType::kBool : ValueType::kNumber;
  }

  std::optional<ValueType> BindRatio(int32_t index) {
    if (RejectInsideRatio(index)) return std::nullopt;
    ratio_probe_ = -1;
    const auto condition = Bind(expr_->nodes[index].lhs);
    const int32_t probe = ratio_probe_;
    ratio_probe_ = -2;
    if (!condition) return std::nullopt;
    ExprNode& node = expr_->nodes[index];
    if (!IsConditional(*condition)) {
      return Mismatch(node.lhs, "a condition as the first argument of ratio()", *condition);
    }
    if (probe < 0) {
      return Fail(node.lhs, "expected a condition that reads a probe inside ratio(), got " +
                                Quote(Spelled(node.lhs)));
    }
    node.probe = probe;
    Retain(probe, node.window);
    return node.type = ValueType::kNumber;
  }

  std::optional<ValueType> BindAge(int32_t index) {
    if (RejectInsideRatio(index)) return std::nullopt;
    ExprNode& node = expr_->nodes[index];
    const ExprNode& arg = expr_->nodes[node.lhs];
    if (arg.op != ExprOp::kRef || expr_->Text(arg).find('.') != std::string::npos) {
      return Fail(node.lhs, "expected a probe name as the argument of age(), got " +
                                Quote(Spelled(node.lhs)));
    }
    const auto probe = FindProbe(expr_->Text(arg), arg.begin);
    if (!probe) return std::nullopt;
    node.probe = *probe;
    return node.type = ValueType::kNumber;
  }

  Expr* expr_;
  std::vector<ProbeData>* probes_;
  std::vector<int32_t>* probes_read_;
  ExprError* error_;
  const ProbeIndex* probe_index_;  // may be null: search probes_
  // -2: not inside ratio(); -1: inside, no probe seen yet; >= 0: the probe it reads.
  int32_t ratio_probe_ = -2;
};

Value FromCell(const Cell& cell) {
  switch (cell.kind) {
    case Cell::Kind::kNumber:
      return Value::Number(cell.number);
    case Cell::Kind::kString:
      return Value::Text(cell.text);
    case Cell::Kind::kMissing:
      break;
  }
  return Value::Unknown();
}

Value FromTruth(Truth truth) {
  if (truth == Truth::kUnknown) return Value::Unknown();
  return Value::Bool(truth == Truth::kTrue);
}

// Lowers the context's next change to `at` when that is still ahead of `now`.
void NoteChange(EvalContext& context, TimePoint at) {
  if (context.next_change != nullptr && at > context.now && at < *context.next_change) {
    *context.next_change = at;
  }
}

bool ContainsAge(const Expr& expr, int32_t index) {
  const ExprNode& node = expr.nodes[index];
  if (node.op == ExprOp::kAge) return true;
  return (node.lhs >= 0 && ContainsAge(expr, node.lhs)) ||
         (node.rhs >= 0 && ContainsAge(expr, node.rhs));
}

// `age(p) OP x`, either way round, flips when age(p) reaches x: at last_report + x. The
// millisecond that contains that instant and the next one cover every operator and the
// rounding of x. Only for an x without age() in it, which stays put as time passes (in
// `age(a) > age(b)` the crossing would move with every evaluation and never come).
void NoteAgeCrossing(const Expr& expr, const ExprNode& node, const Value& lhs, const Value& rhs,
                     EvalContext& context) {
  int32_t age = -1;
  int32_t other = -1;
  const Value* threshold = nullptr;
  if (expr.nodes[node.lhs].op == ExprOp::kAge) {
    age = node.lhs;
    other = node.rhs;
    threshold = &rhs;
  } else if (expr.nodes[node.rhs].op == ExprOp::kAge) {
    age = node.rhs;
    other = node.lhs;
    threshold = &lhs;
  } else {
    return;
  }
  if (threshold->kind != Value::Kind::kNumber || ContainsAge(expr, other)) return;
  const ProbeData& data = (*context.probes)[expr.nodes[age].probe];
  if (!data.reported) return;
  const double at_ms = static_cast<double>(ToMillis(data.last_report)) + threshold->number * 1000.0;
  if (!(std::fabs(at_ms) < 9e15)) return;  // NaN, or further than any clock goes
  const TimePoint at = FromMillis(static_cast<int64_t>(std::floor(at_ms)));
  NoteChange(context, at);
  NoteChange(context, at + Duration{1});
}

// The latest cell of a probe's field, or the historical one inside ratio().
const Cell* ReadCell(const EvalContext& context, int32_t probe, int32_t slot) {
  if (probe == context.sample_probe) return &context.sample[slot];
  const ProbeData& data = (*context.probes)[probe];
  if (!data.Fresh(context.now) || !data.history || data.history->size() == 0) return nullptr;
  return &data.history->cells(data.history->size() - 1)[slot];
}

Value Compare(ExprOp op, const Value& a, const Value& b) {
  using Kind = Value::Kind;
  if (a.kind == Kind::kUnknown || b.kind == Kind::kUnknown) return Value::Unknown();
  if (a.kind == Kind::kNumber && b.kind == Kind::kNumber) {
    switch (op) {
      case ExprOp::kEq:
        return Value::Bool(a.number == b.number);
      case ExprOp::kNe:
        return Value::Bool(a.number != b.number);
      case ExprOp::kLt:
        return Value::Bool(a.number < b.number);
      case ExprOp::kLe:
        return Value::Bool(a.number <= b.number);
      case ExprOp::kGt:
        return Value::Bool(a.number > b.number);
      case ExprOp::kGe:
        return Value::Bool(a.number >= b.number);
      default:
        return Value::Unknown();
    }
  }
  if (a.kind == Kind::kString && b.kind == Kind::kString) {
    if (op == ExprOp::kEq) return Value::Bool(a.text == b.text);
    if (op == ExprOp::kNe) return Value::Bool(a.text != b.text);
  }
  // A json field whose value has the other type: no answer.
  return Value::Unknown();
}

Value Arithmetic(ExprOp op, const Value& a, const Value& b) {
  if (a.kind != Value::Kind::kNumber || b.kind != Value::Kind::kNumber) return Value::Unknown();
  switch (op) {
    case ExprOp::kAdd:
      return Value::Number(a.number + b.number);
    case ExprOp::kSub:
      return Value::Number(a.number - b.number);
    case ExprOp::kMul:
      return Value::Number(a.number * b.number);
    case ExprOp::kDiv:
      return Value::Number(a.number / b.number);
    default:
      return Value::Unknown();
  }
}

bool SameValue(const Cell& a, const Cell& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == Cell::Kind::kString) return a.text == b.text;
  // NaN to NaN is no change.
  return a.number == b.number || (std::isnan(a.number) && std::isnan(b.number));
}

Value Window(const Expr& expr, const ExprNode& node, EvalContext& context) {
  const ProbeData& data = (*context.probes)[node.probe];
  if (!data.Fresh(context.now) || !data.history) return Value::Unknown();
  const ProbeHistory& history = *data.history;
  const TimePoint since = context.now - node.window;
  // Samples in (now - window, now], newest first.
  size_t first = history.size();
  while (first > 0 && history.time(first - 1) > since) --first;
  size_t last = history.size();
  while (last > first && history.time(last - 1) > context.now) --last;
  // With no new result the window still changes when its oldest sample leaves it (at
  // time + window, `since` reaches it) or a sample stamped after `now` enters it.
  if (first < last) NoteChange(context, history.time(first) + node.window);
  if (last < history.size()) NoteChange(context, history.time(last));

  if (node.op == ExprOp::kRatio) {
    size_t held = 0;
    size_t known = 0;
    const int32_t saved_probe = context.sample_probe;
    const Cell* saved_sample = context.sample;
    context.sample_probe = node.probe;
    for (size_t i = first; i < last; ++i) {
      context.sample = history.cells(i);
      const Truth truth = EvaluateTruth(expr, node.lhs, context);
      if (truth == Truth::kUnknown) continue;
      ++known;
      if (truth == Truth::kTrue) ++held;
    }
    context.sample_probe = saved_probe;
    context.sample = saved_sample;
    if (known == 0) return Value::Unknown();
    return Value::Number(static_cast<double>(held) / static_cast<double>(known));
  }

  if (node.op == ExprOp::kCount || node.op == ExprOp::kChanges) {
    size_t count = 0;
    size_t changes = 0;
    const Cell* previous = nullptr;
    for (size_t i = first; i < last; ++i) {
      const Cell& cell = history.cells(i)[node.slot];
      if (cell.kind == Cell::Kind::kMissing) continue;
      ++count;
      if (previous != nullptr && !SameValue(*previous, cell)) ++changes;
      previous = &cell;
    }
    return Value::Number(static_cast<double>(node.op == ExprOp::kCount ? count : changes));
  }

  // Numeric aggregations skip samples without a number and NaN samples.
  double sum = 0;
  double low = 0;
  double high = 0;
  size_t count = 0;
  if (node.op == ExprOp::kQuantile) context.scratch->clear();
  for (size_t i = first; i < last; ++i) {
    const Cell& cell = history.cells(i)[node.slot];
    if (cell.kind != Cell::Kind::kNumber || std::isnan(cell.number)) continue;
    const double v = cell.number;
    if (count == 0) {
      low = high = v;
    } else {
      low = std::min(low, v);
      high = std::max(high, v);
    }
    sum += v;
    ++count;
    if (node.op == ExprOp::kQuantile) context.scratch->push_back(v);
  }
  if (count == 0) return Value::Unknown();
  switch (node.op) {
    case ExprOp::kAvg:
      return Value::Number(sum / static_cast<double>(count));
    case ExprOp::kMin:
      return Value::Number(low);
    case ExprOp::kMax:
      return Value::Number(high);
    case ExprOp::kQuantile: {
      // Linear interpolation between closest ranks, as Prometheus' quantile_over_time.
      std::vector<double>& values = *context.scratch;
      std::sort(values.begin(), values.end());
      const double rank = node.number * static_cast<double>(values.size() - 1);
      const size_t below = static_cast<size_t>(std::floor(rank));
      const size_t above = std::min(below + 1, values.size() - 1);
      const double weight = rank - static_cast<double>(below);
      return Value::Number(values[below] + (values[above] - values[below]) * weight);
    }
    default:
      return Value::Unknown();
  }
}

}  // namespace

bool BindExpression(Expr* expr, bool condition, std::vector<ProbeData>* probes,
                    std::vector<int32_t>* probes_read, ExprError* error,
                    const ProbeIndex* probe_index) {
  Binder binder(expr, probes, probes_read, error, probe_index);
  const auto type = binder.Bind(expr->root);
  if (!type) return false;
  if (condition && !IsConditional(*type)) {
    *error = {expr->nodes[expr->root].begin,
              "expected a condition (a comparison, or a number that is true when non-zero), got "
              "a string"};
    return false;
  }
  return true;
}

void KeepLiteralTextsOnly(Expr* expr) {
  size_t literals = 0;
  for (const ExprNode& node : expr->nodes) literals += node.op == ExprOp::kString ? 1 : 0;
  std::vector<std::string> kept;
  kept.reserve(literals);
  for (ExprNode& node : expr->nodes) {
    if (node.text < 0) continue;
    if (node.op == ExprOp::kString) {
      kept.push_back(std::move(expr->texts[static_cast<size_t>(node.text)]));
      node.text = static_cast<int32_t>(kept.size() - 1);
    } else {
      node.text = -1;
    }
  }
  expr->texts = std::move(kept);
}

Truth TruthOf(const Value& value) {
  if (value.kind != Value::Kind::kNumber) return Truth::kUnknown;
  // NaN is a value, and like a comparison with NaN it is false.
  if (std::isnan(value.number)) return Truth::kFalse;
  return value.number != 0 ? Truth::kTrue : Truth::kFalse;
}

Truth EvaluateTruth(const Expr& expr, int32_t index, EvalContext& context) {
  const ExprNode& node = expr.nodes[index];
  switch (node.op) {
    case ExprOp::kNot: {
      const Truth operand = EvaluateTruth(expr, node.lhs, context);
      if (operand == Truth::kUnknown) return Truth::kUnknown;
      return operand == Truth::kTrue ? Truth::kFalse : Truth::kTrue;
    }
    case ExprOp::kAnd: {
      const Truth lhs = EvaluateTruth(expr, node.lhs, context);
      if (lhs == Truth::kFalse) return Truth::kFalse;
      const Truth rhs = EvaluateTruth(expr, node.rhs, context);
      if (rhs == Truth::kFalse) return Truth::kFalse;
      return lhs == Truth::kTrue && rhs == Truth::kTrue ? Truth::kTrue : Truth::kUnknown;
    }
    case ExprOp::kOr: {
      const Truth lhs = EvaluateTruth(expr, node.lhs, context);
      if (lhs == Truth::kTrue) return Truth::kTrue;
      const Truth rhs = EvaluateTruth(expr, node.rhs, context);
      if (rhs == Truth::kTrue) return Truth::kTrue;
      return lhs == Truth::kFalse && rhs == Truth::kFalse ? Truth::kFalse : Truth::kUnknown;
    }
    case ExprOp::kAge: {
      // Bare age(p) as a condition: false at the instant of the report, true after.
      const ProbeData& data = (*context.probes)[node.probe];
      if (data.reported) NoteChange(context, data.last_report + Duration{1});
      return TruthOf(Evaluate(expr, index, context));
    }
    default:
      return TruthOf(Evaluate(expr, index, context));
  }
}

Value Evaluate(const Expr& expr, int32_t index, EvalContext& context) {
  const ExprNode& node = expr.nodes[index];
  switch (node.op) {
    case ExprOp::kNumber:
    case ExprOp::kBool:
      return Value::Number(node.number);
    case ExprOp::kString:
      return Value::Text(expr.Text(node));
    case ExprOp::kRef: {
      const Cell* cell = ReadCell(context, node.probe, node.slot);
      return cell == nullptr ? Value::Unknown() : FromCell(*cell);
    }
    case ExprOp::kNeg: {
      const Value operand = Evaluate(expr, node.lhs, context);
      if (operand.kind != Value::Kind::kNumber) return Value::Unknown();
      return Value::Number(-operand.number);
    }
    case ExprOp::kAdd:
    case ExprOp::kSub:
    case ExprOp::kMul:
    case ExprOp::kDiv:
      return Arithmetic(node.op, Evaluate(expr, node.lhs, context),
                        Evaluate(expr, node.rhs, context));
    case ExprOp::kEq:
    case ExprOp::kNe:
    case ExprOp::kLt:
    case ExprOp::kLe:
    case ExprOp::kGt:
    case ExprOp::kGe: {
      const Value lhs = Evaluate(expr, node.lhs, context);
      const Value rhs = Evaluate(expr, node.rhs, context);
      if (context.next_change != nullptr) NoteAgeCrossing(expr, node, lhs, rhs, context);
      return Compare(node.op, lhs, rhs);
    }
    case ExprOp::kNot:
    case ExprOp::kAnd:
    case ExprOp::kOr:
      return FromTruth(EvaluateTruth(expr, index, context));
    case ExprOp::kAvg:
    case ExprOp::kMin:
    case ExprOp::kMax:
    case ExprOp::kQuantile:
    case ExprOp::kRatio:
    case ExprOp::kChanges:
    case ExprOp::kCount:
      return Window(expr, node, context);
    case ExprOp::kAbsent: {
      const Cell* cell = ReadCell(context, node.probe, node.slot);
      return Value::Bool(cell == nullptr || cell->kind == Cell::Kind::kMissing);
    }
    case ExprOp::kAge: {
      const ProbeData& data = (*context.probes)[node.probe];
      if (!data.reported) return Value::Unknown();
      return Value::Number(ToSeconds(context.now - data.last_report));
    }
  }
  return Value::Unknown();
}

std::string FormatValue(const Value& value) {
  switch (value.kind) {
    case Value::Kind::kUnknown:
      return "n/a";
    case Value::Kind::kString:
      return "\"" + std::string(value.text) + "\"";
    case Value::Kind::kNumber:
      break;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value.number);
  return buffer;
}

}  // namespace rollguard
