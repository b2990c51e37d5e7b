// Slack payloads for incoming webhooks: pure functions of a Notification.
//
// The document is {"text": fallback, "attachments": [{"color", "fallback", "blocks"}]}:
// `text` is what phones and screen readers show; the attachment carries the colour bar
// (one colour per grade) and Block Kit blocks: a header with the title, a section with
// the summary, fields with the probe values, what rollguard did, the breaker budget, and
// a context line naming the host and the rule's labels. Text is escaped for Slack's
// mrkdwn (&, <, >) and cut to Slack's limits. No URL or secret ever appears in it.
#pragma once

#include <string>
#include <string_view>

#include "daemon/notification.h"

namespace rollguard {

// Colour bar per grade: excellent #2eb886, good #7cd197, warning #daa038,
// critical #e01e5a, failure #8b0000.
std::string_view SlackGradeColor(Grade grade);

// The colour of a notification: its rule's grade for grade events and reminders; for
// actions: suppressed #daa038, dry run #9e9e9e, finished ok #2eb886, failed/timeout
// #8b0000; breaker open #e01e5a, closed #2eb886; verify failed #8b0000; reload failed
// #e01e5a, recovered #2eb886.
std::string_view SlackColor(const Notification& notification);

// Escapes &, < and > the way Slack's mrkdwn requires.
std::string SlackEscape(std::string_view text);

// The JSON document to POST to a Slack incoming webhook.
std::string SlackPayload(const Notification& notification);

}  // namespace rollguard
