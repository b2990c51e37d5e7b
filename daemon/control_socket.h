// ControlSocket: the daemon's unix stream socket for the CLI (spec §6, §7: `status`,
// `pause`, `resume`, `breaker reset`, `deployed` are never on TCP).
//
// Protocol: the client connects, writes one request as one JSON line, and reads one JSON
// line back; then the daemon closes the connection. Requests:
//   {"command": "status"}
//   {"command": "pause", "duration": "30m"}
//   {"command": "resume"}
//   {"command": "breaker_reset", "breaker": "NAME"}      (breaker optional: the default)
//   {"command": "deployed", "service": "S", "version": "V"}  (both optional)
// Replies: {"ok": true, "message": "...", ...} or {"ok": false, "error": "..."};
// `status` adds "status": the same document as GET /api/v1/status.
//
// Access: the socket file is created mode 0660 with group `rollguard` when that group
// exists, else 0600 (its owner only: root, or the daemon's user); the kernel then refuses
// everyone else with EACCES at connect(). The socket is created with a restrictive umask,
// so there is no moment at which it is more open than that.
//
// Everything runs on the sd-event loop and never blocks it: the listening socket and
// every connection are non-blocking, a request is at most 64 KiB, a client that sends
// nothing for 5 s is dropped, and at most 32 connections are served at once.
// Not thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

// What the socket's commands act on; the runtime implements it.
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  // The status document (JSON text, an object).
  virtual std::string StatusJson() = 0;
  // Suppresses actions until now + `duration`; returns that time.
  virtual Result<TimePoint> Pause(Duration duration) = 0;
  // Ends a pause. Returns whether one was in effect.
  virtual bool Resume() = 0;
  // Closes breaker `name` ("" or "default": the unnamed one); errors name the known ones.
  virtual Status ResetBreaker(const std::string& name) = 0;
  // Records a deploy of `service` ("" = none named) at version `version` (may be empty).
  virtual Status Deployed(const std::string& service, const std::string& version) = 0;
};

// Parses one request line and runs it against `target`; returns the reply line (without
// its newline). Malformed requests get {"ok": false, "error": "..."}.
std::string HandleControlRequest(std::string_view request, ControlTarget& target);

class ControlSocket {
 public:
  // Creates the socket at `path` (replacing a stale socket file left by a crash, never
  // any other kind of file; creating the parent folder, mode 0755, when missing) and
  // serves it on `event`. `event` and `target` must outlive the socket.
  static Result<std::unique_ptr<ControlSocket>> Create(sd_event* event, const std::string& path,
                                                       ControlTarget& target);
  // Closes every connection and removes the socket file.
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  const std::string& path() const { return path_; }
  // "group rollguard" or "owner only": who besides root may connect (for the start log).
  const std::string& access() const { return access_; }

 private:
  struct Connection;
  ControlSocket(sd_event* event, std::string path, ControlTarget& target);

  static int OnAccept(sd_event_source* source, int fd, uint32_t events, void* userdata);
  static int OnConnectionIo(sd_event_source* source, int fd, uint32_t events, void* userdata);
  static int OnConnectionTimeout(sd_event_source* source, uint64_t usec, void* userdata);
  void Serve(Connection& connection, uint32_t events);
  void Close(Connection& connection);

  sd_event* event_;
  std::string path_;
  std::string access_;
  ControlTarget& target_;
  int listen_fd_ = -1;
  sd_event_source* listen_source_ = nullptr;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
};

}  // namespace rollguard
