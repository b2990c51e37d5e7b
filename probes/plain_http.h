// PlainHttp: HTTP/1.1 requests over kept-alive plain TCP connections, driven by an sd-event
// loop, for the http probes that need nothing more than that.
//
// libcurl does everything an http probe can ask for (TLS, DNS, redirects, bodies), and
// costs ~25 us of CPU per transfer on a kept-alive loopback connection even in a bare
// multi loop, half of it in user space: a connection-liveness poll() per transfer, the
// URL parsed again, the status line read with sscanf, a dozen allocations
// (bench/RESULTS.md). The probes most fleets run are the simplest kind: GET /health of an
// address, every few seconds. Those (http_probe.cc decides which: http:// to an IP
// address, GET or HEAD, no body, no redirects followed) take this path: the request's
// bytes are built once per probe, a run on a kept-alive connection is one send() and one
// recv(), and the answer is read by http-parser (Debian's libhttp-parser, the parser
// Node.js used for a decade) rather than by hand. Everything else stays on libcurl.
//
// Connections: at most kMaxOriginConnections are open to one address at once; a run past
// that waits for one (within its own timeout), oldest first until the oldest has waited
// half its timeout, then newest first (as CurlMulti's queue, for the same reason). An idle
// connection stays registered for input: a peer that closes it (keep-alive timeout) or
// sends anything unasked is noticed and the connection closed. A request on a reused
// connection that fails before any byte of the answer (the peer closed it just then) is
// sent once more on a new connection, as browsers and curl do.
//
// Bounds: a run costs at most its timeout, connecting and waiting for a connection
// included. The body is read up to kMaxBodyBytes (a larger announced Content-Length is
// refused before reading), the head up to http-parser's 80 KiB.
//
// Thread-safety: none; everything happens on the loop's thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/time.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

// One request, built once per probe.
struct PlainHttpRequest {
  union Address {
    sockaddr any;
    sockaddr_in v4;
    sockaddr_in6 v6;
  };
  Address address{};  // 28 bytes where a sockaddr_storage is 128, once per probe
  socklen_t address_length = 0;
  std::string origin;  // "address:port": runs to it share connections
  std::string bytes;   // the whole request
  bool head = false;   // HEAD: the answer has no body, whatever its head announces
};

// What a run came to.
struct PlainHttpOutcome {
  enum class Failure {
    kNone,
    kTimeout,
    kConnect,       // connect() failed: connect_errno
    kClosed,        // the peer closed (or reset) the connection before the answer was whole
    kMalformed,     // not HTTP/1.x: detail says what the parser saw
    kBodyTooLarge,  // more than kMaxBodyBytes, read or announced
    kResources,     // no socket could be had: detail
  };
  enum class Phase { kConnecting, kWaiting, kReading };

  Failure failure = Failure::kNone;
  Phase phase = Phase::kConnecting;  // how far it got: where a timeout struck
  int connect_errno = 0;
  std::string detail;
  int status = 0;  // of the final answer; 0 until a status line was read
  std::string body;
  bool new_connection = false;    // connected for this run (else reused)
  bool received = false;          // a byte of the answer came
  double connect_seconds = 0;     // new_connection only
  double first_byte_seconds = 0;  // the request sent until the answer's first byte
  double total_seconds = 0;       // from leaving the queue until done
};

class PlainHttp {
 public:
  static constexpr size_t kMaxOriginConnections = 64;
  static constexpr size_t kMaxBodyBytes = size_t{1} << 20;

  // Called once per run, from the loop (never from within Start or Cancel). It may start
  // and cancel runs, and destroy this object.
  using Done = std::function<void(PlainHttpOutcome)>;

  // `event` must outlive this object.
  explicit PlainHttp(sd_event* event);
  // Closes every connection; runs in flight are dropped without their Done.
  ~PlainHttp();
  PlainHttp(const PlainHttp&) = delete;
  PlainHttp& operator=(const PlainHttp&) = delete;

  // Starts a run of `request` under `key` (unique among runs in flight, an address of the
  // caller's own) that ends within `timeout`. False when a run under `key` is in flight.
  bool Start(const void* key, std::shared_ptr<const PlainHttpRequest> request, Duration timeout,
             Done done);

  // Drops the run under `key`, if any; its Done is not called. A connection in the middle
  // of its answer is closed.
  void Cancel(const void* key);

  size_t runs() const { return runs_.size(); }
  size_t open_connections() const { return connections_.size(); }
  size_t new_connections() const { return new_connections_; }  // since construction

 private:
  struct Origin;
  struct Connection;
  struct Run;

  static int OnReady(sd_event_source* source, int fd, uint32_t revents, void* self);
  static int OnExpiry(sd_event_source* source, uint64_t usec, void* self);
  static int OnDeferred(sd_event_source* source, void* self);

  uint64_t NowUsec() const;
  void Admit(Origin& origin);
  void Assign(Run& run, Connection* idle);
  void Connect(Run& run);
  void Send(Connection& connection);
  void Receive(Connection& connection);
  void OnEvents(Connection& connection, uint32_t events);
  // The connection ended under its run (EOF, reset) with `error` (0 for EOF).
  void Lost(Connection& connection, int error);
  // The answer is whole; `clean`: nothing came after it, so the connection may be kept.
  void Answered(Connection& connection, bool clean);
  // Readies `connection` for its run's answer.
  void StartAnswer(Connection& connection);
  void Fail(Run& run, PlainHttpOutcome::Failure failure, std::string detail = {});
  // Ends `run` with its outcome: out of the queue and the expiry index, its connection
  // released (kept when `keep` and idle-able), Done queued for DispatchFinished.
  void Finish(Run& run, bool keep_connection);
  void Close(Connection& connection);
  void Watch(Connection& connection, uint32_t events);
  void ArmExpiry();
  void DispatchFinished();

  sd_event* event_;
  int epoll_fd_ = -1;
  sd_event_source* ready_ = nullptr;
  sd_event_source* expiry_ = nullptr;
  uint64_t expiry_armed_usec_ = 0;  // 0: disarmed
  sd_event_source* deferred_ = nullptr;

  std::unordered_map<const void*, std::unique_ptr<Run>> runs_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;  // by id
  std::unordered_map<std::string, Origin> origins_;
  std::multimap<uint64_t, Run*> expiries_;  // by deadline, runs not finished
  std::vector<const void*> finished_;       // keys of finished runs, for DispatchFinished
  size_t idle_count_ = 0;                   // connections in the origins' idle lists
  uint64_t next_connection_id_ = 1;
  size_t new_connections_ = 0;
  // One read's worth, shared by every connection. Left uninitialised: a vector would zero
  // all of it, making 64 KiB resident where answers of a few hundred bytes touch a page.
  std::unique_ptr<char[]> buffer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace rollguard
