#include "daemon/control_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace rollguard {
namespace {

using nlohmann::json;

constexpr size_t kMaxRequestBytes = 64 * 1024;
constexpr size_t kMaxConnections = 32;
constexpr uint64_t kIdleTimeoutUs = 5'000'000;
constexpr const char* kGroup = "rollguard";

std::string Errno(int error) { return std::strerror(error); }

std::string Reply(bool ok, const std::string& text, json extra = json::object()) {
  extra["ok"] = ok;
  extra[ok ? "message" : "error"] = text;
  return extra.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string StringField(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end() || it->is_null()) return "";
  if (!it->is_string()) throw std::invalid_argument(std::string(key) + " must be a string");
  return it->get<std::string>();
}

}  // namespace

std::string HandleControlRequest(std::string_view request, ControlTarget& target) {
  json parsed = json::parse(request, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Reply(false, "expected one JSON object per line, such as {\"command\": \"status\"}");
  }
  try {
    const std::string command = StringField(parsed, "command");
    if (command == "status") {
      json status = json::parse(target.StatusJson(), nullptr, false);
      if (status.is_discarded()) return Reply(false, "the status document is not valid JSON");
      return Reply(true, "status", json{{"status", std::move(status)}});
    }
    if (command == "pause") {
      const std::string text = StringField(parsed, "duration");
      auto duration = ParseDuration(text);
      if (!duration || duration->count() <= 0) {
        return Reply(false, "pause: expected a duration such as 30m or 1h, got \"" + text + "\"");
      }
      auto until = target.Pause(*duration);
      if (!until) return Reply(false, until.error().message);
      return Reply(true, "paused until " + FormatIso8601(*until) + ": actions are suppressed",
                   json{{"paused_until", FormatIso8601(*until)}});
    }
    if (command == "resume") {
      return Reply(true, target.Resume() ? "resumed: actions run again"
                                         : "not paused: actions were already running");
    }
    if (command == "breaker_reset") {
      std::string name = StringField(parsed, "breaker");
      if (Status reset = target.ResetBreaker(name); !reset) {
        return Reply(false, reset.error().message);
      }
      return Reply(true, "breaker " + (name.empty() ? std::string("default") : name) + " reset");
    }
    if (command == "deployed") {
      const std::string service = StringField(parsed, "service");
      const std::string version = StringField(parsed, "version");
      if (Status recorded = target.Deployed(service, version); !recorded) {
        return Reply(false, recorded.error().message);
      }
      std::string what = "deploy recorded";
      if (!service.empty()) what += " for " + service;
      if (!version.empty()) what += " at version " + version;
      return Reply(true, what);
    }
    return Reply(false, "unknown command \"" + command +
                            "\" (expected status, pause, resume, breaker_reset or deployed)");
  } catch (const std::exception& error) {
    return Reply(false, error.what());
  }
}

struct ControlSocket::Connection {
  ControlSocket* owner = nullptr;
  uint64_t id = 0;
  int fd = -1;
  sd_event_source* io = nullptr;
  sd_event_source* timer = nullptr;
  std::string in;
  std::string out;
  size_t written = 0;
  bool replying = false;
};

ControlSocket::ControlSocket(sd_event* event, std::string path, ControlTarget& target)
    : event_(event), path_(std::move(path)), target_(target) {}

Result<std::unique_ptr<ControlSocket>> ControlSocket::Create(sd_event* event,
                                                             const std::string& path,
                                                             ControlTarget& target) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Fail("control socket " + path + ": expected a path shorter than " +
                std::to_string(sizeof address.sun_path) + " bytes");
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);

  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    return Fail("control socket " + path + ": cannot create " + parent.string() + ": " +
                Errno(errno));
  }
  struct stat existing {};
  if (lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      return Fail("control socket " + path + ": a file that is not a socket is in the way");
    }
    // A socket file left by a crash; a live daemon on it would be a second daemon with
    // the same config, which its state_dir does not support either.
    unlink(path.c_str());
  }

  std::unique_ptr<ControlSocket> socket(new ControlSocket(event, path, target));
  socket->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (socket->listen_fd_ < 0) return Fail("control socket " + path + ": " + Errno(errno));
  // Owner-only from the first instant; opened up to the group below.
  const mode_t old_umask = umask(0177);
  const int bound = bind(socket->listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
  const int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) return Fail("control socket " + path + ": cannot bind: " + Errno(bind_errno));

  socket->access_ = "owner only";
  if (const group* rollguard_group = getgrnam(kGroup)) {
    if (chown(path.c_str(), static_cast<uid_t>(-1), rollguard_group->gr_gid) == 0 &&
        chmod(path.c_str(), 0660) == 0) {
      socket->access_ = "group rollguard";
    }
  }
  if (listen(socket->listen_fd_, 16) != 0) {
    const int error = errno;
    unlink(path.c_str());
    return Fail("control socket " + path + ": cannot listen: " + Errno(error));
  }
  const int rc = sd_event_add_io(event, &socket->listen_source_, socket->listen_fd_, EPOLLIN,
                                 &ControlSocket::OnAccept, socket.get());
  if (rc < 0) {
    unlink(path.c_str());
    return Fail("control socket " + path + ": cannot watch it: " + Errno(-rc));
  }
  return socket;
}

ControlSocket::~ControlSocket() {
  while (!connections_.empty()) Close(*connections_.begin()->second);
  if (listen_source_ != nullptr) sd_event_source_disable_unref(listen_source_);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
}

int ControlSocket::OnAccept(sd_event_source* /*source*/, int fd, uint32_t /*events*/,
                            void* userdata) {
  auto* self = static_cast<ControlSocket*>(userdata);
  for (;;) {
    const int client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return 0;  // EAGAIN, or a client that already left
    if (self->connections_.size() >= kMaxConnections) {
      close(client);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->owner = self;
    connection->id = self->next_id_++;
    connection->fd = client;
    if (sd_event_add_io(self->event_, &connection->io, client, EPOLLIN,
                        &ControlSocket::OnConnectionIo, connection.get()) < 0) {
      close(client);
      continue;
    }
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const uint64_t now_us =
        static_cast<uint64_t>(now.tv_sec) * 1'000'000 + static_cast<uint64_t>(now.tv_nsec) / 1000;
    sd_event_add_time(self->event_, &connection->timer, CLOCK_MONOTONIC, now_us + kIdleTimeoutUs, 0,
                      &ControlSocket::OnConnectionTimeout, connection.get());
    self->connections_.emplace(connection->id, std::move(connection));
  }
}

int ControlSocket::OnConnectionIo(sd_event_source* /*source*/, int /*fd*/, uint32_t events,
                                  void* userdata) {
  auto* connection = static_cast<Connection*>(userdata);
  connection->owner->Serve(*connection, events);
  return 0;
}

int ControlSocket::OnConnectionTimeout(sd_event_source* /*source*/, uint64_t /*usec*/,
                                       void* userdata) {
  auto* connection = static_cast<Connection*>(userdata);
  connection->owner->Close(*connection);
  return 0;
}

void ControlSocket::Serve(Connection& connection, uint32_t events) {
  if (!connection.replying) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = read(connection.fd, buffer, sizeof buffer);
      if (n > 0) {
        connection.in.append(buffer, static_cast<size_t>(n));
        if (connection.in.find('\n') != std::string::npos) break;
        if (connection.in.size() > kMaxRequestBytes) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (errno == EINTR) continue;
        return;  // wait for the rest of the line
      }
      break;  // EOF or error: answer what arrived (a line without its newline counts)
    }
    const size_t newline = connection.in.find('\n');
    if (connection.in.size() > kMaxRequestBytes &&
        (newline == std::string::npos || newline > kMaxRequestBytes)) {
      connection.out = Reply(false, "request longer than 64 KiB");
    } else if (newline == std::string::npos && connection.in.empty()) {
      Close(connection);  // connected and left without a word
      return;
    } else {
      connection.out = HandleControlRequest(
          std::string_view(connection.in).substr(0, std::min(newline, connection.in.size())),
          target_);
    }
    connection.out += '\n';
    connection.replying = true;
    sd_event_source_set_io_events(connection.io, EPOLLOUT);
    events = EPOLLOUT;
  }
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
  while (connection.written < connection.out.size()) {
    const ssize_t n = send(connection.fd, connection.out.data() + connection.written,
                           connection.out.size() - connection.written, MSG_NOSIGNAL);
    if (n > 0) {
      connection.written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;  // EPOLLOUT wakes us again
    break;                                 // the client left
  }
  Close(connection);
}

void ControlSocket::Close(Connection& connection) {
  sd_event_source_disable_unref(connection.io);
  sd_event_source_disable_unref(connection.timer);
  close(connection.fd);
  connections_.erase(connection.id);  // destroys `connection`
}

}  // namespace rollguard
