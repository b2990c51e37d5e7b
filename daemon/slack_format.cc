#include "daemon/slack_format.h"

#include <nlohmann/json.hpp>

namespace rollguard {
namespace {

using nlohmann::json;

// Slack's limits: header text 150 characters, section text 3000, a field 2000.
constexpr size_t kHeaderLimit = 150;
constexpr size_t kSectionLimit = 3000;
constexpr size_t kFieldLimit = 2000;
constexpr size_t kMaxFields = 10;

// Cuts at a UTF-8 character boundary, marking the cut with an ellipsis.
std::string Cut(std::string text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit - 3;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return text + "…";
}

json Mrkdwn(const std::string& text) { return {{"type", "mrkdwn"}, {"text", text}}; }

}  // namespace

std::string_view SlackGradeColor(Grade grade) {
  switch (grade) {
    case Grade::kExcellent:
      return "#2eb886";
    case Grade::kGood:
      return "#7cd197";
    case Grade::kWarning:
      return "#daa038";
    case Grade::kCritical:
      return "#e01e5a";
    case Grade::kFailure:
      return "#8b0000";
  }
  return "#2eb886";
}

std::string_view SlackColor(const Notification& n) {
  switch (n.kind) {
    case NotificationKind::kGradeChanged:
    case NotificationKind::kResolved:
    case NotificationKind::kReminder:
    case NotificationKind::kStale:
      return SlackGradeColor(n.grade);
    case NotificationKind::kActionDecided: {
      const std::string decision = n.actions.empty() ? "" : n.actions.front().decision;
      if (decision == "executed") return SlackGradeColor(n.grade);
      if (decision == "dry_run") return "#9e9e9e";
      return "#daa038";
    }
    case NotificationKind::kActionFinished:
      return !n.actions.empty() && n.actions.front().result == "ok" ? "#2eb886" : "#8b0000";
    case NotificationKind::kBreakerOpened:
      return "#e01e5a";
    case NotificationKind::kBreakerClosed:
      return "#2eb886";
    case NotificationKind::kVerifyFailed:
      return "#8b0000";
    case NotificationKind::kReloadFailed:
      return "#e01e5a";
    case NotificationKind::kReloadRecovered:
      return "#2eb886";
  }
  return "#2eb886";
}

std::string SlackEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string SlackPayload(const Notification& n) {
  const std::string title = NotificationTitle(n);
  json blocks = json::array();
  // Header blocks are plain_text: no escaping, and Slack shows them as written.
  blocks.push_back(
      {{"type", "header"},
       {"text", {{"type", "plain_text"}, {"text", Cut(title, kHeaderLimit)}, {"emoji", true}}}});
  json fields = json::array();
  std::string long_text;  // facts that need more room than a field go in sections
  for (const auto& [heading, text] : NotificationFacts(n)) {
    if (heading == "Labels") continue;  // shown in the context line
    const std::string body = "*" + heading + "*\n" + SlackEscape(text);
    if (heading == "Summary") {
      blocks.push_back({{"type", "section"}, {"text", Mrkdwn(Cut(body, kSectionLimit))}});
    } else if (heading == "Error" || body.size() > kFieldLimit || fields.size() >= kMaxFields) {
      blocks.push_back({{"type", "section"}, {"text", Mrkdwn(Cut(body, kSectionLimit))}});
    } else {
      fields.push_back(Mrkdwn(body));
    }
  }
  if (!n.rule.empty() && fields.size() < kMaxFields) {
    std::string grade = std::string(GradeName(n.grade));
    if (n.kind == NotificationKind::kGradeChanged || n.kind == NotificationKind::kResolved) {
      grade = (n.previous_known ? std::string(GradeName(n.previous)) : "none") + " → " + grade;
    }
    fields.insert(fields.begin(), Mrkdwn("*Rule*\n" + SlackEscape(n.rule)));
    if (fields.size() < kMaxFields) fields.insert(fields.begin() + 1, Mrkdwn("*Grade*\n" + grade));
  }
  if (!fields.empty()) blocks.push_back({{"type", "section"}, {"fields", fields}});
  std::string context = "rollguard";
  if (!n.host.empty()) context += " on " + SlackEscape(n.host);
  context += " · " + FormatIso8601(n.time);
  for (const auto& [key, value] : n.labels) context += " · " + SlackEscape(key + "=" + value);
  blocks.push_back(
      {{"type", "context"}, {"elements", json::array({Mrkdwn(Cut(context, kFieldLimit))})}});

  const std::string fallback = SlackEscape(title);
  json attachment = {
      {"color", std::string(SlackColor(n))}, {"fallback", fallback}, {"blocks", blocks}};
  json payload = {{"text", fallback}, {"attachments", json::array({attachment})}};
  return payload.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace rollguard
