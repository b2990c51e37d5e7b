#include "rules/grade.h"

namespace rollguard {

std::string_view GradeName(Grade grade) {
  switch (grade) {
    case Grade::kExcellent:
      return "excellent";
    case Grade::kGood:
      return "good";
    case Grade::kWarning:
      return "warning";
    case Grade::kCritical:
      return "critical";
    case Grade::kFailure:
      return "failure";
  }
  return "unknown";
}

std::optional<Grade> ParseGrade(std::string_view name) {
  for (int i = 0; i < kGradeCount; ++i) {
    const Grade grade = static_cast<Grade>(i);
    if (GradeName(grade) == name) return grade;
  }
  return std::nullopt;
}

}  // namespace rollguard
