// CurlMulti: libcurl's multi interface driven by an sd-event loop.
//
// One CurlMulti serves every HTTP (and TCP) probe on a loop, so connections, DNS answers
// and TLS sessions are reused across runs and probes. It never blocks and starts no
// threads of its own: curl tells it which sockets to watch (CURLMOPT_SOCKETFUNCTION) and
// when to wake up (CURLMOPT_TIMERFUNCTION -> one CLOCK_MONOTONIC time source); each
// wake-up calls curl_multi_socket_action and then hands finished transfers to their
// completion callbacks.
//
// curl's sockets are watched in an epoll set of CurlMulti's own, and that set is one IO
// source on the loop. sd-event dispatches one source per loop iteration, and an
// iteration costs about as much as a probe's own work (preparing every source, re-arming
// the timer, another epoll_wait): with a source per socket, a burst of answers would cost
// an iteration each. With one source for the set, one dispatch takes every ready socket
// at once and hands completed transfers on after the whole batch.
//
// A kept-alive connection is reused run after run, and curl stops watching its socket
// between runs (CURL_POLL_REMOVE) only to watch it again for the next one. Dropping and
// re-adding the epoll registration each time was two system calls per run. So CurlMulti
// opens and closes the connection sockets itself (CURLOPT_OPENSOCKETFUNCTION /
// CURLOPT_CLOSESOCKETFUNCTION): it knows for certain when a socket is gone, and can leave
// an idle connection registered until then.
//
// Thread-safety: none; everything happens on the loop's thread.
#pragma once

#include <curl/curl.h>

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/time.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

class CurlMulti {
 public:
  // Called once when a transfer finishes (successfully or not) with its CURLcode. The
  // handle has already been removed from the multi handle: the callback may clean it up,
  // add new transfers or remove other ones.
  using Completion = std::function<void(int curl_code)>;

  // Connections kept open for reuse, across all probes (CURLMOPT_MAXCONNECTS).
  static constexpr long kMaxCachedConnections = 256;  // NOLINT(runtime/int): curl's type

  // Connections open at once to one host (CURLMOPT_MAX_HOST_CONNECTIONS); transfers past
  // it wait (in AddQueued's queue, or in curl for Add) for one of them to finish. Without a cap, a
  // burst of runs to one target (1,000 probes at startup, or a loop that fell behind) opened a
  // connection per run; on a busy machine connecting took longer than short timeouts, every
  // timed-out run closed its connection, and the next runs connected afresh: nothing was answered
  // again until the load went away (bench/RESULTS.md). Queued on a few warm connections,
  // the same burst is served in milliseconds. The cost: past this many runs in flight to
  // one host, a run waits for a connection, within its own timeout.
  static constexpr long kMaxHostConnections = 64;  // NOLINT(runtime/int): curl's type

  // `event` must outlive this object.
  explicit CurlMulti(sd_event* event);
  // Abandons transfers still in flight (their completions are not called). Add()'s easy
  // handles stay owned by their callers.
  ~CurlMulti();
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  // Starts a transfer on a fully configured easy handle. The caller keeps owning `easy`
  // and must not clean it up while the transfer is in flight (Remove() it first).
  // Sets the handle's CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION (and
  // their data) to this object's: callers must not set them.
  // False when curl refuses the handle; `done` is then never called.
  // REQUIRES: `easy` not already added.
  bool Add(CURL* easy, Completion done);

  // Configures a handle with every option at its default for a queued transfer whose turn
  // has come: everything but CURLOPT_TIMEOUT_MS and the socket callbacks, which CurlMulti
  // sets. False fails the transfer (CURLE_OUT_OF_MEMORY).
  using Setup = std::function<bool(CURL* easy)>;
  // Called once when a queued transfer finishes, with the handle it ran on, or null when
  // it never ran (its turn never came: CURLE_OPERATION_TIMEDOUT; no handle could be had
  // or set up: CURLE_OUT_OF_MEMORY). The handle was removed from the multi handle and goes
  // back to the pool when this returns: read what is needed from it here. The callback may
  // add and remove transfers.
  using QueuedCompletion = std::function<void(CURL* easy, int curl_code)>;

  // A transfer to `origin` ("scheme://host:port") that waits its turn here, first come
  // first served (newest first once the oldest has waited half its timeout), while
  // kMaxHostConnections transfers to that origin are in curl. curl queues such transfers
  // itself, but libcurl 7.88 walks its whole list of waiting transfers on every removal:
  // with thousands waiting (10,000 probes of one target at 1 s on a busy machine) that was
  // 70% of the daemon's CPU, and the loop never caught up (bench/RESULTS.md). The whole
  // transfer, waiting included, takes at most `timeout`: CURLOPT_TIMEOUT_MS is set to what
  // is left when it enters curl.
  //
  // A waiting transfer holds no easy handle: one is taken from the pool and `setup` when its
  // turn comes. Each handle is ~5 KiB, ~20 KiB once it has run; taken at queueing, the
  // thousands of runs that wait after a stall at 10,000 probes held 30-40 MB, which the
  // process kept after they were freed (bench/RESULTS.md).
  //
  // `key` names the transfer for Remove(); the caller keeps it unique while the transfer
  // lives (an address of its own). False when a transfer under `key` exists or, if it
  // could enter curl at once, curl refused it; `done` is then never called.
  bool AddQueued(const void* key, const std::string& origin, Duration timeout, Setup setup,
                 QueuedCompletion done);

  // Idle easy handles kept for reuse: about the transfers in flight at once at the
  // throughput the benchmark measures, a few MiB at most.
  static constexpr size_t kMaxIdleEasyHandles = 128;

  // Stops a transfer in flight or waiting, by its handle (Add) or key (AddQueued); its
  // completion is not called. No-op for one that is neither. Safe from any completion
  // callback.
  void Remove(const void* key);

  // Easy handles this object holds: those of queued transfers in curl, and idle ones.
  size_t easy_handles() const { return easy_in_use_ + idle_easy_.size(); }

  // Transfers in flight, waiting ones included.
  size_t active() const { return transfers_.size(); }

  // Transfers waiting in AddQueued's queues for their turn.
  size_t waiting() const { return waiting_count_; }

  sd_event* event() const { return event_; }

 private:
  static int OnSocket(CURL* easy, int fd, int what, void* self, void* socket);
  static int OnTimer(CURLM* multi, long timeout_ms, void* self);  // NOLINT(runtime/int)
  static int OnReady(sd_event_source* source, int fd, uint32_t revents, void* self);
  static int OnTimeout(sd_event_source* source, uint64_t usec, void* self);
  static int OnKick(sd_event_source* source, void* self);
  static int OnExpiry(sd_event_source* source, uint64_t usec, void* self);
  static curl_socket_t OnOpenSocket(void* self, curlsocktype purpose, curl_sockaddr* address);

  // An easy handle with every option at its default: one an earlier transfer gave back,
  // else a fresh one. Null when out of memory. A fresh handle costs about 20 KiB of
  // allocation (curl's transfer state and read buffer) and its cleanup frees it again:
  // per run, that was measurable.
  CURL* TakeEasy();
  // Takes back a handle that is not in flight. Its options are reset now, so nothing of
  // its transfer (URL, headers, secrets) lingers in the pool; kMaxIdleEasyHandles are
  // kept, the rest cleaned up.
  void GiveBackEasy(CURL* easy);
  static int OnCloseSocket(void* self, curl_socket_t fd);

  // What is known about one socket curl uses.
  struct Watch {
    // Tells this socket's epoll events from those of an earlier socket with the same
    // descriptor, and is curl's socketp for it (never 0).
    uint32_t generation = 0;
    uint32_t events = 0;  // registered in epoll_fd_; 0: not registered
    // Opened by OnOpenSocket, so OnCloseSocket will report its end: it may stay
    // registered while curl does not watch it.
    bool owned = false;
    bool wanted = false;  // curl watches it now (between CURL_POLL_IN/OUT and _REMOVE)
  };

  // AddQueued's transfers to one origin.
  struct Origin {
    std::string name;  // its key in origins_
    size_t in_curl = 0;
    std::list<const void*> waiting;  // keys, oldest first
  };

  enum class State {
    kInCurl,
    kWaiting,  // in origin->waiting at `place`
    kEnded,    // waiting for DispatchCompleted to report its Ended entry
  };

  struct Transfer {
    Completion done;               // Add()
    Setup setup;                   // AddQueued(), until it enters curl
    QueuedCompletion queued_done;  // AddQueued()
    CURL* easy = nullptr;          // in curl; AddQueued's come from the pool

    uint64_t serial = 0;  // tells a re-added handle from the transfer it was before
    State state = State::kInCurl;
    Origin* origin = nullptr;    // null for Add(), whose caller owns the handle
    uint64_t queued_usec = 0;    // CLOCK_MONOTONIC; AddQueued only
    uint64_t deadline_usec = 0;  // CLOCK_MONOTONIC; AddQueued only
    std::list<const void*>::iterator place;
  };

  // Transfers that ended without curl (their turn never came, or curl refused them when
  // it came), completed from the loop by DispatchCompleted.
  struct Ended {
    const void* key;
    uint64_t serial;
    int code;
  };

  bool SetSocketCallbacks(CURL* easy);
  bool EnterCurl(const void* key, Transfer& transfer, uint64_t now_usec);
  void LeftCurl(const Transfer& transfer);
  void Admit(Origin& origin);
  void DropIfIdle(const Origin& origin);
  void EndWithoutCurl(const void* key, Transfer& transfer, int code);
  void ArmExpiry(uint64_t deadline_usec);
  uint64_t NowUsec() const;
  int UpdateSocket(int fd, int what, void* known);
  Watch& NewWatch(int fd);
  bool Register(int fd, Watch& watch, uint32_t events);
  void Deregister(int fd, Watch& watch);
  void Unwatch(int fd);
  void ActOnReady();
  void SetTimer(long timeout_ms);  // NOLINT(runtime/int)
  void Act(int fd, int event_mask);
  void DispatchCompleted();

  sd_event* event_;
  CURLM* multi_ = nullptr;
  int epoll_fd_ = -1;                 // curl's sockets
  sd_event_source* ready_ = nullptr;  // epoll_fd_ on the loop
  uint32_t next_generation_ = 1;
  sd_event_source* timer_ = nullptr;
  // curl's "act now" (a 0 ms timeout, after every Add): a defer source is dispatched on the
  // next iteration without arming the timerfd or waiting in epoll.
  sd_event_source* kick_ = nullptr;
  // Waiting transfers past their deadline wake this (10 ms accuracy: a timeout).
  sd_event_source* expiry_ = nullptr;
  uint64_t expiry_armed_usec_ = 0;  // 0: disarmed
  // By key: the handle for Add(), the caller's key for AddQueued().
  std::unordered_map<const void*, Transfer> transfers_;
  std::unordered_map<CURL*, const void*> keys_;      // transfers in curl: handle -> key
  std::unordered_map<std::string, Origin> origins_;  // an origin goes when it is idle
  std::vector<Ended> ended_;
  size_t waiting_count_ = 0;
  uint64_t next_serial_ = 1;
  std::vector<CURL*> idle_easy_;            // TakeEasy's pool, most recently used last
  size_t easy_in_use_ = 0;                  // taken from the pool and not given back
  std::unordered_map<int, Watch> sockets_;  // by fd
  // Flips to false when this object dies, so a completion that destroys the CurlMulti
  // (e.g. the daemon shutting down) does not make the dispatch loop touch freed memory.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace rollguard
