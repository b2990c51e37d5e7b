#include "rules/expression.h"

#include <cctype>
#include <cstdlib>
#include <utility>

namespace rollguard {
namespace {

enum class TokenKind : uint8_t {
  kNumber,
  kDuration,
  kPercent,
  kString,
  kIdent,
  kLParen,
  kRParen,
  kComma,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  size_t begin = 0;
  size_t end = 0;
  double number = 0;  // numbers, durations (seconds), percents (fraction)
  Duration duration{0};
  std::string text;  // identifier as written; string literal unescaped
};

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

std::string Quote(std::string_view text) { return "\"" + std::string(text) + "\""; }

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  // Fills `tokens` (ending with kEnd) or returns false with `error` set.
  bool Run(std::vector<Token>* tokens, ExprError* error) {
    size_t i = 0;
    while (true) {
      while (i < text_.size() && std::isspace(static_cast<unsigned char>(text_[i]))) ++i;
      Token token;
      token.begin = i;
      if (i >= text_.size()) {
        token.kind = TokenKind::kEnd;
        token.end = i;
        tokens->push_back(std::move(token));
        return true;
      }
      const char c = text_[i];
      const char next = i + 1 < text_.size() ? text_[i + 1] : '\0';
      if (IsDigit(c) || (c == '.' && IsDigit(next))) {
        if (!LexNumber(&i, &token, error)) return false;
      } else if (c == '"') {
        if (!LexString(&i, &token, error)) return false;
      } else if (IsIdentStart(c)) {
        while (i < text_.size() && IsIdentChar(text_[i])) ++i;
        // Dotted references: api.latency, api.json.items.0
        while (i + 1 < text_.size() && text_[i] == '.' && IsIdentChar(text_[i + 1])) {
          ++i;
          while (i < text_.size() && IsIdentChar(text_[i])) ++i;
        }
        token.kind = TokenKind::kIdent;
        token.text = std::string(text_.substr(token.begin, i - token.begin));
      } else {
        size_t length = 1;
        switch (c) {
          case '(':
            token.kind = TokenKind::kLParen;
            break;
          case ')':
            token.kind = TokenKind::kRParen;
            break;
          case ',':
            token.kind = TokenKind::kComma;
            break;
          case '+':
            token.kind = TokenKind::kPlus;
            break;
          case '-':
            token.kind = TokenKind::kMinus;
            break;
          case '*':
            token.kind = TokenKind::kStar;
            break;
          case '/':
            token.kind = TokenKind::kSlash;
            break;
          case '<':
            token.kind = next == '=' ? TokenKind::kLe : TokenKind::kLt;
            length = next == '=' ? 2 : 1;
            break;
          case '>':
            token.kind = next == '=' ? TokenKind::kGe : TokenKind::kGt;
            length = next == '=' ? 2 : 1;
            break;
          case '=':
            if (next != '=') {
              *error = {i, "expected == to compare, got ="};
              return false;
            }
            token.kind = TokenKind::kEq;
            length = 2;
            break;
          case '!':
            if (next != '=') {
              *error = {i, "expected != or not, got !"};
              return false;
            }
            token.kind = TokenKind::kNe;
            length = 2;
            break;
          case '&':
            *error = {i, "expected an operator, got & (write and)"};
            return false;
          case '|':
            *error = {i, "expected an operator, got | (write or)"};
            return false;
          default:
            *error = {i, "expected an operand or operator, got " + Quote(text_.substr(i, 1))};
            return false;
        }
        i += length;
      }
      token.end = i;
      tokens->push_back(std::move(token));
    }
  }

 private:
  bool LexNumber(size_t* pos, Token* token, ExprError* error) {
    size_t i = *pos;
    bool plain_integer = true;
    while (i < text_.size() && IsDigit(text_[i])) ++i;
    if (i < text_.size() && text_[i] == '.') {
      plain_integer = false;
      ++i;
      while (i < text_.size() && IsDigit(text_[i])) ++i;
    }
    if (i < text_.size() && (text_[i] == 'e' || text_[i] == 'E')) {
      size_t j = i + 1;
      if (j < text_.size() && (text_[j] == '+' || text_[j] == '-')) ++j;
      if (j < text_.size() && IsDigit(text_[j])) {
        plain_integer = false;
        i = j;
        while (i < text_.size() && IsDigit(text_[i])) ++i;
      }
    }
    const std::string number_text(text_.substr(*pos, i - *pos));
    const double value = std::strtod(number_text.c_str(), nullptr);
    if (i < text_.size() && text_[i] == '%') {
      token->kind = TokenKind::kPercent;
      token->number = value / 100.0;
      *pos = i + 1;
      return true;
    }
    if (i < text_.size() && IsIdentStart(text_[i])) {
      // A duration such as 250ms or 1m30s: integer groups with units.
      while (i < text_.size() && IsIdentChar(text_[i])) ++i;
      const std::string_view spelled = text_.substr(*pos, i - *pos);
      auto parsed = plain_integer ? ParseDuration(spelled) : Result<Duration>(Fail(""));
      if (!parsed) {
        *error = {*pos,
                  "expected a number or a duration like 250ms, 5s, 10m, 1h, 1d or 1m30s, "
                  "got " +
                      Quote(spelled)};
        return false;
      }
      token->kind = TokenKind::kDuration;
      token->duration = *parsed;
      token->number = ToSeconds(*parsed);
      *pos = i;
      return true;
    }
    token->kind = TokenKind::kNumber;
    token->number = value;
    *pos = i;
    return true;
  }

  bool LexString(size_t* pos, Token* token, ExprError* error) {
    size_t i = *pos + 1;
    std::string value;
    while (i < text_.size() && text_[i] != '"') {
      if (text_[i] == '\\' && i + 1 < text_.size() &&
          (text_[i + 1] == '"' || text_[i + 1] == '\\')) {
        ++i;
      }
      value.push_back(text_[i]);
      ++i;
    }
    if (i >= text_.size()) {
      *error = {*pos, "expected a closing \" for this string, got the end of the expression"};
      return false;
    }
    token->kind = TokenKind::kString;
    token->text = std::move(value);
    *pos = i + 1;
    return true;
  }

  std::string_view text_;
};

struct FunctionInfo {
  std::string_view name;
  ExprOp op;
  double quantile;
  bool windowed;  // takes a second argument: the window duration
};

constexpr FunctionInfo kFunctions[] = {
    {"avg", ExprOp::kAvg, 0, true},         {"min", ExprOp::kMin, 0, true},
    {"max", ExprOp::kMax, 0, true},         {"p50", ExprOp::kQuantile, 0.50, true},
    {"p90", ExprOp::kQuantile, 0.90, true}, {"p95", ExprOp::kQuantile, 0.95, true},
    {"p99", ExprOp::kQuantile, 0.99, true}, {"ratio", ExprOp::kRatio, 0, true},
    {"changes", ExprOp::kChanges, 0, true}, {"count", ExprOp::kCount, 0, true},
    {"absent", ExprOp::kAbsent, 0, false},  {"age", ExprOp::kAge, 0, false},
};
constexpr std::string_view kFunctionList =
    "avg, min, max, p50, p90, p95, p99, ratio, changes, count, absent, age";

// A failed parse unwinds by returning -1; the first error is kept.
class Parser {
 public:
  Parser(std::vector<Token> tokens, Expr* expr, ExprError* error)
      : tokens_(std::move(tokens)), expr_(expr), error_(error) {}

  bool ParseTop(bool allow_for) {
    const int32_t root = ParseOr();
    if (root < 0) return false;
    expr_->root = root;
    if (IsKeyword(Peek(), "for")) {
      if (!allow_for) return Error(Peek(), "expected an operator or the end, got for");
      Next();
      const Token& duration = Peek();
      if (duration.kind != TokenKind::kDuration) {
        return Error(duration,
                     "expected a duration after for (like 30s or 5m), got " + Describe(duration));
      }
      expr_->for_duration = duration.duration;
      Next();
    }
    if (Peek().kind != TokenKind::kEnd) {
      return Error(Peek(),
                   "expected an operator or the end of the expression, got " + Describe(Peek()));
    }
    return true;
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  const Token& Next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }

  static bool IsKeyword(const Token& token, std::string_view word) {
    return token.kind == TokenKind::kIdent && token.text == word;
  }

  std::string Describe(const Token& token) const {
    if (token.kind == TokenKind::kEnd) return "the end of the expression";
    return Quote(source().substr(token.begin, token.end - token.begin));
  }
  std::string_view source() const { return expr_->source; }

  bool Error(const Token& token, std::string message) {
    if (!failed_) *error_ = {token.begin, std::move(message)};
    failed_ = true;
    return false;
  }

  int32_t AddText(const std::string& text) {
    expr_->texts.push_back(text);
    return static_cast<int32_t>(expr_->texts.size() - 1);
  }

  int32_t Add(ExprNode node) {
    expr_->nodes.push_back(std::move(node));
    return static_cast<int32_t>(expr_->nodes.size() - 1);
  }

  int32_t Binary(ExprOp op, int32_t lhs, int32_t rhs) {
    ExprNode node;
    node.op = op;
    node.lhs = lhs;
    node.rhs = rhs;
    node.begin = expr_->nodes[lhs].begin;
    node.end = expr_->nodes[rhs].end;
    return Add(std::move(node));
  }

  int32_t ParseOr() {
    int32_t lhs = ParseAnd();
    while (lhs >= 0 && IsKeyword(Peek(), "or")) {
      Next();
      const int32_t rhs = ParseAnd();
      if (rhs < 0) return -1;
      lhs = Binary(ExprOp::kOr, lhs, rhs);
    }
    return lhs;
  }

  int32_t ParseAnd() {
    int32_t lhs = ParseNot();
    while (lhs >= 0 && IsKeyword(Peek(), "and")) {
      Next();
      const int32_t rhs = ParseNot();
      if (rhs < 0) return -1;
      lhs = Binary(ExprOp::kAnd, lhs, rhs);
    }
    return lhs;
  }

  int32_t ParseNot() {
    if (!IsKeyword(Peek(), "not")) return ParseComparison();
    const size_t begin = Next().begin;
    const int32_t operand = ParseNot();
    if (operand < 0) return -1;
    ExprNode node;
    node.op = ExprOp::kNot;
    node.lhs = operand;
    node.begin = static_cast<uint32_t>(begin);
    node.end = expr_->nodes[operand].end;
    return Add(std::move(node));
  }

  static std::optional<ExprOp> ComparisonOp(TokenKind kind) {
    switch (kind) {
      case TokenKind::kEq:
        return ExprOp::kEq;
      case TokenKind::kNe:
        return ExprOp::kNe;
      case TokenKind::kLt:
        return ExprOp::kLt;
      case TokenKind::kLe:
        return ExprOp::kLe;
      case TokenKind::kGt:
        return ExprOp::kGt;
      case TokenKind::kGe:
        return ExprOp::kGe;
      default:
        return std::nullopt;
    }
  }

  int32_t ParseComparison() {
    const int32_t lhs = ParseAdditive();
    if (lhs < 0) return -1;
    const auto op = ComparisonOp(Peek().kind);
    if (!op) return lhs;
    Next();
    const int32_t rhs = ParseAdditive();
    if (rhs < 0) return -1;
    if (ComparisonOp(Peek().kind)) {
      Error(Peek(),
            "expected and/or between comparisons (they do not chain), got " + Describe(Peek()));
      return -1;
    }
    return Binary(*op, lhs, rhs);
  }

  int32_t ParseAdditive() {
    int32_t lhs = ParseMultiplicative();
    while (lhs >= 0 && (Peek().kind == TokenKind::kPlus || Peek().kind == TokenKind::kMinus)) {
      const ExprOp op = Next().kind == TokenKind::kPlus ? ExprOp::kAdd : ExprOp::kSub;
      const int32_t rhs = ParseMultiplicative();
      if (rhs < 0) return -1;
      lhs = Binary(op, lhs, rhs);
    }
    return lhs;
  }

  int32_t ParseMultiplicative() {
    int32_t lhs = ParseUnary();
    while (lhs >= 0 && (Peek().kind == TokenKind::kStar || Peek().kind == TokenKind::kSlash)) {
      const ExprOp op = Next().kind == TokenKind::kStar ? ExprOp::kMul : ExprOp::kDiv;
      const int32_t rhs = ParseUnary();
      if (rhs < 0) return -1;
      lhs = Binary(op, lhs, rhs);
    }
    return lhs;
  }

  int32_t ParseUnary() {
    if (Peek().kind != TokenKind::kMinus) return ParsePrimary();
    const size_t begin = Next().begin;
    const int32_t operand = ParseUnary();
    if (operand < 0) return -1;
    ExprNode node;
    node.op = ExprOp::kNeg;
    node.lhs = operand;
    node.begin = static_cast<uint32_t>(begin);
    node.end = expr_->nodes[operand].end;
    return Add(std::move(node));
  }

  int32_t ParsePrimary() {
    const Token& token = Peek();
    ExprNode node;
    node.begin = static_cast<uint32_t>(token.begin);
    node.end = static_cast<uint32_t>(token.end);
    switch (token.kind) {
      case TokenKind::kNumber:
      case TokenKind::kDuration:
      case TokenKind::kPercent:
        node.op = ExprOp::kNumber;
        node.number = token.number;
        Next();
        return Add(std::move(node));
      case TokenKind::kString:
        node.op = ExprOp::kString;
        node.text = AddText(token.text);
        Next();
        return Add(std::move(node));
      case TokenKind::kLParen: {
        Next();
        const int32_t inner = ParseOr();
        if (inner < 0) return -1;
        if (Peek().kind != TokenKind::kRParen) {
          Error(Peek(), "expected ), got " + Describe(Peek()));
          return -1;
        }
        // Widen the span to the parentheses so carets and reasons show them.
        expr_->nodes[inner].begin = node.begin;
        expr_->nodes[inner].end = static_cast<uint32_t>(Next().end);
        return inner;
      }
      case TokenKind::kIdent:
        break;
      default:
        Error(token,
              "expected a number, string, probe, function call or (, got " + Describe(token));
        return -1;
    }
    if (token.text == "true" || token.text == "false") {
      node.op = ExprOp::kBool;
      node.number = token.text == "true" ? 1 : 0;
      Next();
      return Add(std::move(node));
    }
    for (std::string_view keyword : {"and", "or", "not", "for"}) {
      if (token.text == keyword) {
        Error(token,
              "expected a number, string, probe, function call or (, got " + Describe(token));
        return -1;
      }
    }
    if (tokens_[pos_ + 1].kind == TokenKind::kLParen) return ParseCall();
    node.op = ExprOp::kRef;
    node.text = AddText(token.text);
    Next();
    return Add(std::move(node));
  }

  int32_t ParseCall() {
    const Token& name = Peek();
    const FunctionInfo* function = nullptr;
    for (const FunctionInfo& candidate : kFunctions) {
      if (candidate.name == name.text) function = &candidate;
    }
    if (function == nullptr) {
      Error(name,
            "expected a function (" + std::string(kFunctionList) + "), got " + Quote(name.text));
      return -1;
    }
    ExprNode node;
    node.op = function->op;
    node.number = function->quantile;
    node.text = AddText(name.text);
    node.begin = static_cast<uint32_t>(name.begin);
    Next();  // name
    Next();  // (
    node.lhs = ParseOr();
    if (node.lhs < 0) return -1;
    if (function->windowed) {
      if (Peek().kind != TokenKind::kComma) {
        Error(Peek(), "expected , and a window duration (" + name.text + "(x, 5m)), got " +
                          Describe(Peek()));
        return -1;
      }
      Next();
      const Token& window = Peek();
      if (window.kind != TokenKind::kDuration) {
        Error(window, "expected a window duration like 5m, got " + Describe(window));
        return -1;
      }
      if (window.duration <= Duration{0}) {
        Error(window, "expected a window longer than 0s, got " + Describe(window));
        return -1;
      }
      node.window = window.duration;
      Next();
    }
    if (Peek().kind != TokenKind::kRParen) {
      Error(Peek(), std::string("expected ) to close ") + name.text + "(, got " + Describe(Peek()));
      return -1;
    }
    node.end = static_cast<uint32_t>(Next().end);
    return Add(std::move(node));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  Expr* expr_;
  ExprError* error_;
  bool failed_ = false;
};

}  // namespace

ExprParse ParseExpression(std::string_view text, bool allow_for) {
  ExprParse result;
  result.expr.source = std::string(text);
  ExprError error;
  std::vector<Token> tokens;
  if (!Lexer(result.expr.source).Run(&tokens, &error)) {
    result.error = std::move(error);
    return result;
  }
  if (tokens.front().kind == TokenKind::kEnd) {
    result.error = ExprError{0, "expected an expression, got nothing"};
    return result;
  }
  Parser parser(std::move(tokens), &result.expr, &error);
  if (!parser.ParseTop(allow_for)) result.error = std::move(error);
  return result;
}

SummaryParse ParseSummary(std::string_view text) {
  SummaryParse result;
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find("{{", i);
    if (open == std::string_view::npos) {
      result.parts.push_back(SummaryPart{std::string(text.substr(i)), {}, {}, i});
      break;
    }
    if (open > i)
      result.parts.push_back(SummaryPart{std::string(text.substr(i, open - i)), {}, {}, i});
    // Find the closing braces and a `|` outside string literals.
    size_t j = open + 2;
    size_t pipe = std::string_view::npos;
    bool in_string = false;
    while (j < text.size()) {
      const char c = text[j];
      if (in_string) {
        if (c == '\\')
          ++j;
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '|' && pipe == std::string_view::npos) {
        pipe = j;
      } else if (c == '}' && j + 1 < text.size() && text[j + 1] == '}') {
        break;
      }
      ++j;
    }
    if (j >= text.size()) {
      result.error = ExprError{open, "expected }} to close this {{, got the end of the summary"};
      return result;
    }
    const size_t expr_end = pipe == std::string_view::npos ? j : pipe;
    SummaryPart part;
    part.offset = open + 2;
    ExprParse parsed = ParseExpression(text.substr(open + 2, expr_end - open - 2), false);
    if (parsed.error) {
      parsed.error->offset += open + 2;
      result.error = std::move(parsed.error);
      return result;
    }
    part.expr = std::move(parsed.expr);
    if (pipe != std::string_view::npos) {
      const std::string_view spelled = text.substr(pipe + 1, j - pipe - 1);
      std::string filter;
      for (char c : spelled) {
        if (!std::isspace(static_cast<unsigned char>(c))) filter.push_back(c);
      }
      if (filter == "percent") {
        part.filter = SummaryFilter::kPercent;
      } else if (filter == "duration") {
        part.filter = SummaryFilter::kDuration;
      } else if (filter == "number") {
        part.filter = SummaryFilter::kNumber;
      } else {
        result.error = ExprError{
            pipe + 1, "expected a filter (percent, duration, number), got " + Quote(filter)};
        return result;
      }
    }
    result.parts.push_back(std::move(part));
    i = j + 2;
  }
  return result;
}

std::string ExpressionErrorMessage(const std::string& file, int line, std::string_view rule,
                                   std::string_view key, std::string_view text, size_t offset,
                                   std::string_view message) {
  const size_t column = key.size() + 4 + offset;
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": [rule " +
                    std::string(rule) + "] " + std::string(key) + ": " + std::string(message);
  out += "\n    ";
  out += text;
  out += "\n    ";
  out += std::string(offset, ' ');
  out += '^';
  return out;
}

}  // namespace rollguard
