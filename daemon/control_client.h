// ControlClient: the CLI's side of the control socket (daemon/control_socket.h): sends one
// request line, reads one reply line, and turns the status document into a table.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time.h"

namespace rollguard {

// Connects to `socket_path`, sends `request` (one JSON object, no newline) and returns
// the reply line. Gives up after `timeout`. Errors are sentences for an operator:
//   EACCES       "permission denied: rollguard's control socket PATH is for root and the
//                 rollguard group (run as root, or add your user to group rollguard)"
//   ENOENT/ECONNREFUSED  "rollguard is not running: nothing listens on PATH ..."
Result<std::string> SendControlRequest(const std::string& socket_path, const std::string& request,
                                       Duration timeout = std::chrono::seconds(10));

// Renders the status document (the "status" member of a status reply, i.e. the
// /api/v1/status JSON) as a table for a terminal: rules with grade, since and reason;
// breakers; the pause; the last actions (at most `max_actions`, newest first). Times are
// shown as the document gives them (ISO-8601, UTC). Errors when `status_json` is not
// such a document.
Result<std::string> FormatStatusTable(std::string_view status_json, size_t max_actions = 10);

}  // namespace rollguard
