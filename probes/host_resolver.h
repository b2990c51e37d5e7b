// HostResolver: turns a host name into a numeric address without blocking the event loop.
//
// libpq and hiredis resolve names with the blocking getaddrinfo(); a slow or dead DNS
// server would then stall every probe on the loop for seconds. The postgres and redis
// probes resolve through this first and hand the libraries a numeric address. The lookup
// is glibc's getaddrinfo_a() (its own helper thread); the answer comes back to the loop
// through an eventfd. Numeric addresses (IPv4, IPv6) are answered without any lookup,
// still from the loop.
//
// Not thread-safe: create, start, cancel and destroy on the loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

class HostResolver {
 public:
  // `addresses` are numeric ("10.0.0.5", "::1"), in getaddrinfo()'s order of preference,
  // without repeats, at least one; otherwise `error` says why ("DNS lookup of db.internal
  // failed: Name or service not known").
  using Done =
      std::function<void(const std::vector<std::string>& addresses, const std::string& error)>;

  HostResolver() = default;
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // Starts resolving `host` (TCP, any family); `done` is called once,
  // from the loop, never from inside Start(). Replaces any lookup in flight. False (and
  // `done` is dropped) when the loop refuses a new event source (out of memory).
  bool Start(sd_event* event, const std::string& host, Done done);
  // Drops the lookup in flight, if any: `done` is not called. A lookup already running in
  // glibc finishes in the background and is discarded.
  void Cancel();
  bool busy() const { return state_ != nullptr; }

  // True when `host` is an IPv4 or IPv6 literal (no lookup needed).
  static bool IsNumeric(const std::string& host);

  // Internal; public so glibc's notification (a free function) can name it.
  struct State;

 private:
  static void Wake(State& state);
  static int OnReady(sd_event_source* source, int fd, uint32_t revents, void* self);

  std::shared_ptr<State> state_;
};

}  // namespace rollguard
