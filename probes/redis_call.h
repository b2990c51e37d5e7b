// RedisCall: one command sent to a Redis server on a fresh connection, on the daemon's
// sd-event loop, bounded by a timeout. Used by the `redis` probe (one PING, GET, ...)
// and by fleet breakers (one EVAL of an admission script).
//
// A call opens a connection, pipelines AUTH (when a password is set), SELECT (when db is
// not 0) and the command, and closes the connection at the reply. A fresh connection per
// call is deliberate: calls are rare (a probe interval, an action decision), and it shows
// that the server still accepts clients. Host names are resolved on the loop
// (HostResolver), never by hiredis (whose lookup blocks); their addresses are tried in
// turn until one connects. The result is delivered from the loop, never from inside
// Start(), and errors never contain the password.
//
// hiredis's asynchronous API runs on sd-event through RedisEventAdapter (hiredis ships
// adapters for libevent, libev, libuv, ... but not sd-event).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/time.h"

struct redisAsyncContext;
typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

// Where and how to reach one Redis server.
struct RedisTarget {
  std::string host;  // a name or a numeric address (no brackets)
  int port = 6379;
  std::string password;  // secret; empty when AUTH is not needed
  int db = 0;
  Duration timeout = std::chrono::seconds(2);
};

// A reply, converted from hiredis's redisReply so that it outlives the connection.
struct RedisValue {
  enum class Type { kNil, kInteger, kString, kStatus, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string text;                  // kString and kStatus
  std::vector<RedisValue> elements;  // kArray
};

// The outcome of a call. `error` is empty on success; otherwise it says what failed
// ("could not connect: connection refused", "authentication (AUTH) failed: ...",
// "EVAL failed: ERR ...", "timed out after 2s waiting for the reply") and `value` is nil.
struct RedisCallResult {
  std::string error;
  RedisValue value;
  std::chrono::steady_clock::duration elapsed{};
};

class RedisCall {
 public:
  using Done = std::function<void(RedisCallResult)>;

  explicit RedisCall(sd_event* event);
  ~RedisCall();  // cancels a call in flight (its callback is not called)
  RedisCall(const RedisCall&) = delete;
  RedisCall& operator=(const RedisCall&) = delete;

  // Sends `argv` to `target`. A call still in flight is cancelled first. `done` runs
  // once, from the loop; it may start another call or destroy this object.
  void Start(const RedisTarget& target, std::vector<std::string> argv, Done done);
  void Cancel();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs one hiredis asynchronous context on an sd-event loop: hiredis's addRead/delRead/
// addWrite/delWrite/cleanup hooks become the event mask of one io source on the
// context's socket, whose events call redisAsyncHandleRead/Write.
//
// Attach() right after redisAsyncConnect(). hiredis calls cleanup() when it frees the
// context, which drops the io source; the adapter itself must outlive the context (free
// the context before destroying the adapter). Not thread-safe: the loop's thread only.
class RedisEventAdapter {
 public:
  RedisEventAdapter() = default;
  ~RedisEventAdapter();
  RedisEventAdapter(const RedisEventAdapter&) = delete;
  RedisEventAdapter& operator=(const RedisEventAdapter&) = delete;

  // Installs the hooks on `context` (whose ev.data must be unused). False when the context
  // already has an event library attached. `after_events` runs after each batch of socket
  // events has been handed to hiredis, outside every hiredis callback: the place to act on
  // replies and to free the context; it may destroy the adapter.
  bool Attach(sd_event* event, redisAsyncContext* context, std::function<void()> after_events);
  // False once hiredis has freed the context (cleanup hook called).
  bool attached() const { return context_ != nullptr; }
  // True when the last hook call could not register the socket with the loop (out of
  // memory): the caller should give up on the context.
  bool failed() const { return failed_; }

 private:
  static void AddRead(void* self);
  static void DelRead(void* self);
  static void AddWrite(void* self);
  static void DelWrite(void* self);
  static void Cleanup(void* self);
  static int OnIo(sd_event_source* source, int fd, uint32_t revents, void* self);
  void Update(uint32_t events);

  sd_event* event_ = nullptr;
  redisAsyncContext* context_ = nullptr;
  sd_event_source* io_ = nullptr;
  uint32_t events_ = 0;
  bool failed_ = false;
  std::function<void()> after_events_;
};

}  // namespace rollguard
