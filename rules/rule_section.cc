// ParseRuleSection: one [rule NAME] section into a RuleDefinition (declared in
// rules/rule_set.h). Every error is collected, so `rollguard check` shows them all.
#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "common/strings.h"
#include "rules/expression.h"
#include "rules/rule_set.h"

namespace rollguard {
namespace {

constexpr std::string_view kKnownKeys =
    "failure, critical, warning, good, recover, depends, on_warning, on_critical, on_failure, "
    "summary, labels, notify, no_data";

std::string Quote(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool IsLabelName(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

class RuleSectionParser {
 public:
  explicit RuleSectionParser(const IniSection& section) : section_(section) {}

  Result<RuleDefinition> Run() {
    rule_.name = section_.name;
    rule_.where = section_.where;
    if (section_.kind != "rule") {
      SectionError("expected a [rule NAME] section, got [" + section_.header + "]");
    } else if (!IsValidName(section_.name)) {
      SectionError("expected [rule NAME] with NAME matching [a-z][a-z0-9_]*, got " +
                   Quote(section_.name));
    }
    for (const IniEntry& entry : section_.entries) Entry(entry);
    if (errors_.empty()) return std::move(rule_);
    std::string message;
    for (const std::string& error : errors_) message += (message.empty() ? "" : "\n") + error;
    return Fail(std::move(message));
  }

 private:
  void SectionError(const std::string& message) {
    errors_.push_back(section_.where.ToString() + ": [rule " + section_.name + "]: " + message);
  }
  void EntryError(const IniEntry& entry, const std::string& message) {
    errors_.push_back(entry.where.ToString() + ": [rule " + section_.name + "] " + entry.key +
                      ": " + message);
  }

  // False (with an error) when a single-valued key repeats.
  bool Once(const IniEntry& entry) {
    const auto [it, inserted] = seen_.emplace(entry.key, entry.where.line);
    if (inserted) return true;
    EntryError(entry, "expected this key once, got it again (first set at line " +
                          std::to_string(it->second) + ")");
    return false;
  }

  // Space-separated names, each [a-z][a-z0-9_]*.
  std::vector<std::string> Names(const IniEntry& entry, std::string_view what) {
    std::vector<std::string> names = SplitWords(entry.value);
    if (names.empty()) EntryError(entry, "expected " + std::string(what) + ", got nothing");
    for (const std::string& name : names) {
      if (!IsValidName(name)) {
        EntryError(entry, "expected " + std::string(what) + " matching [a-z][a-z0-9_]*, got " +
                              Quote(name));
      }
    }
    return names;
  }

  void Entry(const IniEntry& entry) {
    const std::string& key = entry.key;
    for (int level = GradeIndex(Grade::kGood); level < kGradeCount; ++level) {
      if (key == GradeName(static_cast<Grade>(level))) {
        Condition(entry, level);
        return;
      }
    }
    if (key == "recover") {
      if (!Once(entry)) return;
      auto parsed = ParseDuration(entry.value);
      if (!parsed) {
        EntryError(entry, "expected a duration like 250ms, 5s, 10m, 1h, 1d or 1m30s, got " +
                              Quote(entry.value));
        return;
      }
      rule_.recover = *parsed;
    } else if (key == "depends") {
      for (std::string& name : Names(entry, "rule names")) {
        if (name == section_.name) {
          EntryError(entry, "expected other rules, got the rule itself (" + name + ")");
          continue;
        }
        rule_.depends.push_back(std::move(name));
        rule_.depends_where.push_back(entry.where);
      }
    } else if (key == "on_warning" || key == "on_critical" || key == "on_failure") {
      if (!Once(entry)) return;
      const Grade grade = *ParseGrade(std::string_view(key).substr(3));
      rule_.actions_on.Edit(GradeIndex(grade)) = Names(entry, "action names");
      rule_.actions_where.Edit(GradeIndex(grade)) = entry.where;
    } else if (key == "summary") {
      if (!Once(entry)) return;
      const SummaryParse parsed = ParseSummary(entry.value);
      if (parsed.error) {
        errors_.push_back(ExpressionErrorMessage(entry.where.file, entry.where.line, section_.name,
                                                 key, entry.value, parsed.error->offset,
                                                 parsed.error->message));
        return;
      }
      rule_.summary = entry.value;
      rule_.summary_where = entry.where;
    } else if (key == "labels") {
      if (!Once(entry)) return;
      for (const std::string& word : SplitWords(entry.value)) {
        const size_t equals = word.find('=');
        const std::string name = word.substr(0, equals);
        if (equals == std::string::npos || !IsLabelName(name) || equals + 1 == word.size()) {
          EntryError(entry, "expected key=value pairs like team=payments, got " + Quote(word));
          continue;
        }
        if (!rule_.labels.emplace(name, word.substr(equals + 1)).second) {
          EntryError(entry, "expected each label once, got " + Quote(name) + " again");
        }
      }
    } else if (key == "notify") {
      if (!Once(entry)) return;
      rule_.notify = Names(entry, "notifier names");
    } else if (key == "no_data") {
      if (!Once(entry)) return;
      const auto grade = ParseGrade(entry.value);
      if (entry.value == "hold") {
        rule_.no_data.reset();
      } else if (grade && IsWorseThan(*grade, Grade::kGood)) {
        rule_.no_data = grade;
      } else {
        EntryError(entry, "expected hold, warning, critical or failure, got " + Quote(entry.value));
      }
    } else {
      EntryError(entry, "expected a rule key (" + std::string(kKnownKeys) + "), got " + Quote(key) +
                            " (unknown key)");
    }
  }

  void Condition(const IniEntry& entry, int level) {
    const ExprParse parsed = ParseExpression(entry.value, /*allow_for=*/true);
    if (parsed.error) {
      errors_.push_back(ExpressionErrorMessage(entry.where.file, entry.where.line, section_.name,
                                               entry.key, entry.value, parsed.error->offset,
                                               parsed.error->message));
      return;
    }
    rule_.conditions.Edit(level).push_back(ConditionSource{entry.value, entry.where});
  }

  const IniSection& section_;
  RuleDefinition rule_;
  std::map<std::string, int> seen_;
  std::vector<std::string> errors_;
};

}  // namespace

Result<RuleDefinition> ParseRuleSection(const IniSection& section) {
  return RuleSectionParser(section).Run();
}

}  // namespace rollguard
