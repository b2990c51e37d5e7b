// NotifierConfig: one [notifier NAME] section of the main config (spec §2, §9).
//
// Kept apart from the notifier itself so that config.h can hold notifiers without
// depending on the runtime's observer interface.
//
// Keys:
//   type             slack | webhook | alertmanager (required)
//   webhook_url_file secret: the file holding the URL (trimmed), or env:NAME
//   url              the URL written in the config (or env:NAME); exactly one of the two
//   min_grade        grade changes below it are not sent (default warning)
//   repeat           reminder while a rule stays at/above min_grade (default 4h; 0 = off)
//   timeout          per request, connect included (default 10s)
//   max_queue        messages waiting per notifier; the oldest is dropped beyond (100)
//   max_tries        attempts per message before giving up (default 10; backoff 1s..60s)
//   resend           alertmanager only: how often firing alerts are re-posted (1m)
//   external_url     optional: where humans find this rollguard (webhook externalURL,
//                    alertmanager generatorURL); never a secret
// The URL is a secret in every case: it is never logged nor shown anywhere; errors say
// which key held it, never its value.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/ini.h"
#include "common/time.h"
#include "rules/grade.h"

namespace rollguard {

enum class NotifierType { kSlack, kWebhook, kAlertmanager };

// "slack", "webhook", "alertmanager".
std::string_view NotifierTypeName(NotifierType type);

struct NotifierConfig {
  std::string name;
  NotifierType type = NotifierType::kSlack;
  std::string url;  // secret; for alertmanager the base URL (".../api/v2/alerts" is added)
  Grade min_grade = Grade::kWarning;
  Duration repeat = std::chrono::hours(4);  // 0 = no reminders
  Duration timeout = std::chrono::seconds(10);
  size_t max_queue = 100;
  int max_tries = 10;
  Duration resend = std::chrono::minutes(1);
  std::string external_url;
  SourceLocation where;
};

// Parses a [notifier NAME] section. `base_directory` resolves a relative
// webhook_url_file. Errors are appended, each "file:line: [notifier NAME] key: ...".
// Returns false when the section had errors.
bool ParseNotifierSection(const IniSection& section, const std::string& base_directory,
                          NotifierConfig* notifier, std::vector<std::string>* errors);

}  // namespace rollguard
