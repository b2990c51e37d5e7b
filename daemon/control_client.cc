#include "daemon/control_client.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

namespace rollguard {
namespace {

using nlohmann::json;

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Closes the descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Waits for `events` on `fd` until `deadline_ms`; false on timeout.
bool WaitFor(int fd, short events, int64_t deadline_ms) {  // NOLINT(runtime/int): poll's type
  for (;;) {
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = poll(&p, 1, static_cast<int>(left));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the read/write report it
  }
}

std::string Text(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

// Pads columns to their widest cell; the last column is not padded.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = "  ";
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

Result<std::string> SendControlRequest(const std::string& socket_path, const std::string& request,
                                       Duration timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof address.sun_path) {
    return Fail("control socket path \"" + socket_path + "\" is empty or too long");
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd socket_fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (socket_fd.fd < 0) return Fail(std::string("cannot create a socket: ") + std::strerror(errno));
  if (connect(socket_fd.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    if (error == EACCES || error == EPERM) {
      return Fail("permission denied: rollguard's control socket " + socket_path +
                  " is for root and the rollguard group (run as root, or add your user to the "
                  "rollguard group)");
    }
    if (error == ENOENT || error == ECONNREFUSED) {
      return Fail("rollguard is not running: nothing listens on its control socket " + socket_path +
                  " (" + std::strerror(error) + "; see [daemon] socket in --config)");
    }
    return Fail("cannot connect to rollguard's control socket " + socket_path + ": " +
                std::strerror(error));
  }
  const int64_t deadline =
      MonotonicMs() + std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  const std::string line = request + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    if (!WaitFor(socket_fd.fd, POLLOUT, deadline)) {
      return Fail("rollguard did not take the request within " + FormatDuration(timeout));
    }
    const ssize_t n =
        send(socket_fd.fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Fail(std::string("lost the connection to rollguard: ") + std::strerror(errno));
    }
  }
  std::string reply;
  char buffer[8192];
  for (;;) {
    if (!WaitFor(socket_fd.fd, POLLIN, deadline)) {
      return Fail("rollguard did not answer within " + FormatDuration(timeout));
    }
    const ssize_t n = recv(socket_fd.fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      reply.append(buffer, static_cast<size_t>(n));
      if (const size_t newline = reply.find('\n'); newline != std::string::npos) {
        reply.resize(newline);
        return reply;
      }
    } else if (n == 0) {
      if (reply.empty()) return Fail("rollguard closed the connection without answering");
      return reply;
    } else if (errno != EAGAIN && errno != EINTR) {
      return Fail(std::string("lost the connection to rollguard: ") + std::strerror(errno));
    }
  }
}

Result<std::string> FormatStatusTable(std::string_view status_json, size_t max_actions) {
  const json status = json::parse(status_json, nullptr, false);
  if (status.is_discarded() || !status.is_object()) {
    return Fail("the daemon's status is not a JSON object");
  }
  std::string out;
  const json paused = status.value("paused_until", json(nullptr));
  out += "rollguard " + Text(status.value("version", json("?")));
  if (const auto config = status.find("config"); config != status.end() && config->is_object()) {
    out += "  config " + Text(config->value("path", json(nullptr)));
    if (!config->value("last_reload_ok", true)) {
      out += "  LAST RELOAD FAILED: " + Text(config->value("last_reload_error", json(nullptr)));
    }
  }
  out += "\n";
  out += paused.is_null() ? "actions: enabled\n"
                          : "actions: PAUSED until " + Text(paused) + " (rollguard resume)\n";

  out += "\nRULES\n";
  std::vector<std::vector<std::string>> rows = {{"RULE", "GRADE", "SINCE", "REASON"}};
  for (const json& rule : status.value("rules", json::array())) {
    std::string grade = Text(rule.value("grade", json(nullptr)));
    if (rule.value("stale", false)) grade += " (stale)";
    std::string reason = Text(rule.value("reason", json("")));
    if (const json held = rule.value("held_by", json(nullptr)); !held.is_null()) {
      reason = "held by " + Text(held) + "; " + reason;
    }
    rows.push_back({Text(rule.value("name", json(nullptr))), grade,
                    Text(rule.value("since", json(nullptr))), reason});
  }
  out += rows.size() == 1 ? "  (none)\n" : Table(rows);

  out += "\nBREAKERS\n";
  rows = {{"BREAKER", "STATE", "ADMITTED", "OPEN UNTIL", "SCOPE"}};
  std::string fleet_notes;
  for (const json& breaker : status.value("breakers", json::array())) {
    const std::string name = Text(breaker.value("name", json(nullptr)));
    std::string scope = Text(breaker.value("scope", json("local")));
    if (scope == "fleet") {
      scope += " (redis " + Text(breaker.value("redis", json(nullptr)));
      scope += breaker.value("redis_reachable", true) ? ")" : ", UNREACHABLE)";
      for (const json& holder : breaker.value("claims", json::array())) {
        fleet_notes += "  " + name + ": " + Text(holder) + "\n";
      }
    }
    rows.push_back({name, Text(breaker.value("state", json(nullptr))),
                    Text(breaker.value("admitted_in_window", json(0))) + "/" +
                        Text(breaker.value("max_actions", json(0))),
                    Text(breaker.value("open_until", json(nullptr))), scope});
  }
  out += rows.size() == 1 ? "  (none)\n" : Table(rows) + fleet_notes;

  out += "\nLAST ACTIONS\n";
  rows = {{"TIME", "RULE", "ACTION", "DECISION", "RESULT"}};
  for (const json& action : status.value("last_actions", json::array())) {
    if (rows.size() > max_actions) break;
    std::string result = Text(action.value("result", json(nullptr)));
    if (action.value("decision", json("")) == "executed" && result == "-") result = "running";
    if (const json error = action.value("error", json(nullptr)); !error.is_null()) {
      result += " (" + Text(error) + ")";
    }
    std::string decision = Text(action.value("decision", json(nullptr)));
    if (decision == "suppressed_fleet") {
      // Whose run it was, and (from the claim) how it went.
      decision += " (" + Text(action.value("why", json(""))) + ")";
    }
    rows.push_back({Text(action.value("time", json(nullptr))),
                    Text(action.value("rule", json(nullptr))),
                    Text(action.value("action", json(nullptr))), decision, result});
  }
  out += rows.size() == 1 ? "  (none)\n" : Table(rows);
  return out;
}

}  // namespace rollguard
