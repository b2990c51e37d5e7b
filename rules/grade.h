// The five grades a rule evaluates to, from best to worst (spec §4).
#pragma once

#include <optional>
#include <string_view>

namespace rollguard {

enum class Grade : int { kExcellent = 0, kGood = 1, kWarning = 2, kCritical = 3, kFailure = 4 };
inline constexpr int kGradeCount = 5;

// "excellent", "good", "warning", "critical", "failure".
std::string_view GradeName(Grade grade);
std::optional<Grade> ParseGrade(std::string_view name);

inline int GradeIndex(Grade grade) { return static_cast<int>(grade); }
inline bool IsWorseThan(Grade a, Grade b) { return GradeIndex(a) > GradeIndex(b); }

}  // namespace rollguard
