// The `redis` probe type (spec §3): does a fresh connection answer `command` in time?
//
// Keys: address ("host:port", "[ipv6]:port", required), password_file (secret: sent with
// AUTH, never logged or quoted back), db (a database number, default 0: SELECT is sent
// when it is not 0), command (default "PING"; split into argv with shell-like quoting, no
// shell, e.g. `command = GET "deploy:last ok"`). Fields: up (connected, AUTH and SELECT
// accepted, the command answered without an error reply), latency (seconds from the
// start of the run to the command's reply), value (an integer reply, or a string/status
// reply that is a number, e.g. GET of a counter; absent otherwise — "PONG", nil, arrays).
//
// Each run opens a fresh connection, pipelines AUTH, SELECT and the command, and closes
// the connection at the reply, like check_redis: a kept connection would not show that the
// server still accepts clients (maxclients, a full accept queue). hiredis's asynchronous
// API runs on the daemon's sd-event loop through RedisEventAdapter below; a timer abandons
// the run at `timeout`. A host name is resolved on the loop (HostResolver), not by
// hiredis (whose lookup blocks); its addresses are tried in turn until one connects.
#pragma once

#include <functional>
#include <memory>

#include "probes/probe.h"

struct redisAsyncContext;
typedef struct sd_event_source sd_event_source;  // NOLINT: matches <systemd/sd-event.h>

namespace rollguard {

class ProbeKeys;

// Reads the redis keys of a section whose common keys are in `spec`. Errors go to
// `keys`; nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseRedisProbe(ProbeSpec spec, ProbeKeys& keys);

// Runs one hiredis asynchronous context on an sd-event loop (hiredis ships adapters for
// libevent, libev, libuv, ... but not sd-event): hiredis's addRead/delRead/addWrite/
// delWrite/cleanup hooks become the event mask of one io source on the context's socket,
// whose events call redisAsyncHandleRead/Write.
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
