// HttpEndpoints: the read-only HTTP listener on `[daemon] listen` (spec §7).
//
//   GET /metrics        Prometheus text format 0.0.4 (Metrics::Exposition)
//   GET /healthz        200 "ok" while the event loop is alive; 503 when its heartbeat is
//                       older than `heartbeat_max_age`
//   GET /api/v1/status  the StatusBoard's current publication (application/json). When
//                       there is none (the first request, or the first after the board
//                       released it for want of readers) the worker waits up to
//                       `status_wait` for the loop to publish one (StatusBoard::Request),
//                       then answers 503 with a JSON error
// Anything else: 404 for an unknown path, 405 (Allow: GET) for another method. Nothing
// mutates state over TCP; pause, resume, breaker reset and deployed go through the unix
// control socket.
//
// The server (civetweb) runs its own few worker threads. They only read what is safe to
// read from any thread: the metrics registry, the status board's published snapshot (and
// its request flag, and the wake-up it sends the loop) and an atomic heartbeat. They never
// touch the event loop's state. A slow or hostile client
// costs one worker for at most `request_timeout`; requests over `max_request_bytes` of
// headers are refused; no keep-alive.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time.h"

// civetweb's, kept out of this header.
struct mg_context;     // NOLINT
struct mg_connection;  // NOLINT

namespace rollguard {

class Metrics;
class StatusBoard;

// Where to listen: a numeric IPv4 address or a bracketed IPv6 address, and a port.
struct ListenAddress {
  std::string host;  // "127.0.0.1", "::1" (without brackets)
  bool ipv6 = false;
  int port = 0;  // 0: the kernel picks one (see HttpEndpoints::port())

  // "127.0.0.1:9847", "[::1]:9847".
  std::string ToString() const;
};

// Parses `[daemon] listen`: "off" -> nullopt; "127.0.0.1:9847", "0.0.0.0:9847",
// "[::1]:9847", "[::]:9847" -> the address. Host names are not accepted (the listener
// must not depend on DNS). Errors say what was expected, without a location.
Result<std::optional<ListenAddress>> ParseListenAddress(std::string_view text);

struct HttpOptions {
  int threads = 4;
  Duration request_timeout = std::chrono::seconds(5);
  int max_request_bytes = 8192;
  // /healthz answers 503 once the loop has not called Heartbeat() for this long. The loop
  // beats every second.
  Duration heartbeat_max_age = std::chrono::seconds(5);
  // How long a status request waits for a publication when there is none. At 10,000
  // probes one takes a few hundred milliseconds; a loop that cannot publish in 5 s is
  // stalled, and the client gets a 503 rather than a hung connection.
  Duration status_wait = std::chrono::seconds(5);
};

class HttpEndpoints {
 public:
  // Binds `address` and starts serving. `metrics` and `status` must outlive the
  // endpoints; `status` is only asked for its document (StatusBoard::Request), and its
  // SetWake() must be done before. Errors name the address: "cannot listen on
  // 127.0.0.1:9847: ...".
  static Result<std::unique_ptr<HttpEndpoints>> Start(const ListenAddress& address,
                                                      const Metrics& metrics, StatusBoard& status,
                                                      const HttpOptions& options = {});

  // Stops accepting, waits for the workers to finish their requests, closes the socket.
  ~HttpEndpoints();
  HttpEndpoints(const HttpEndpoints&) = delete;
  HttpEndpoints& operator=(const HttpEndpoints&) = delete;

  // The event loop is alive: called on every sweep. Any thread.
  void Heartbeat();

  // The port actually bound (useful when 0 was asked).
  int port() const { return port_; }
  const ListenAddress& address() const { return address_; }

 private:
  HttpEndpoints(ListenAddress address, const Metrics& metrics, StatusBoard& status,
                const HttpOptions& options);
  static int Handle(mg_connection* connection, void* self);
  static int64_t SteadyNowMs();

  ListenAddress address_;
  const Metrics& metrics_;
  StatusBoard& status_;
  HttpOptions options_;
  int port_ = 0;
  std::atomic<int64_t> heartbeat_ms_;
  mg_context* context_ = nullptr;
};

}  // namespace rollguard
