#include "probes/plain_http.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace rollguard {
namespace {

// A deadline is a timeout, reported as such: 1 ms late is fine.
constexpr uint64_t kExpiryAccuracyUsec = 1000;
// Ready connections taken per dispatch (see CurlMulti: one dispatch takes a whole batch).
constexpr int kReadyBatch = 128;
// Idle connections kept across all addresses, as CurlMulti::kMaxCachedConnections: past
// it, a connection whose run is done is closed instead of kept.
constexpr size_t kMaxIdleConnections = 256;
// A connection idle longer than this is closed rather than reused, as curl's
// CURLOPT_MAXAGE_CONN default: servers drop idle connections after a while, and a request
// on one just being dropped is a retry at best.
constexpr uint64_t kMaxIdleUsec = 118'000'000;
constexpr size_t kReadBytes = 64 * 1024;

uint64_t ToUsec(Duration duration) {
  return static_cast<uint64_t>(std::max<Duration::rep>(duration.count(), 1)) * 1000;
}

double Seconds(uint64_t usec) { return static_cast<double>(usec) / 1e6; }

}  // namespace

struct PlainHttp::Origin {
  std::vector<Connection*> idle;  // most recently used last
  size_t open = 0;                // connections, idle ones included
  std::list<Run*> waiting;        // oldest first
};

struct PlainHttp::Run {
  const void* key = nullptr;
  std::shared_ptr<const PlainHttpRequest> request;
  Done done;
  Origin* origin = nullptr;
  uint64_t queued_usec = 0;
  uint64_t deadline_usec = 0;
  uint64_t started_usec = 0;  // left the queue
  uint64_t sent_usec = 0;     // the last byte of the request written
  Connection* connection = nullptr;
  bool waiting = false;  // in origin->waiting at `place`
  std::list<Run*>::iterator place;
  std::multimap<uint64_t, Run*>::iterator expiry;
  bool finished = false;
  bool retried = false;  // sent once more after a reused connection failed
  PlainHttpOutcome outcome;
};

struct PlainHttp::Connection {
  uint64_t id = 0;
  int fd = -1;
  Origin* origin = nullptr;
  Run* run = nullptr;  // null while idle
  bool connected = false;
  bool reused = false;  // served a run before this one
  uint32_t events = 0;  // registered in the epoll set
  uint64_t connect_usec = 0;
  uint64_t idle_since_usec = 0;
  size_t sent = 0;
  bool complete = false;       // the current answer is whole
  bool informational = false;  // the answer being read is a 1xx
  bool body_too_large = false;
  http_parser parser{};
};

PlainHttp::PlainHttp(sd_event* event)
    : event_(event), buffer_(std::make_unique_for_overwrite<char[]>(kReadBytes)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0 ||
      sd_event_add_io(event_, &ready_, epoll_fd_, EPOLLIN, &PlainHttp::OnReady, this) < 0 ||
      sd_event_add_time(event_, &expiry_, CLOCK_MONOTONIC, 0, kExpiryAccuracyUsec,
                        &PlainHttp::OnExpiry, this) < 0 ||
      sd_event_add_defer(event_, &deferred_, &PlainHttp::OnDeferred, this) < 0) {
    std::abort();  // out of descriptors or memory at startup
  }
  sd_event_source_set_enabled(expiry_, SD_EVENT_OFF);
  sd_event_source_set_enabled(deferred_, SD_EVENT_OFF);
}

PlainHttp::~PlainHttp() {
  *alive_ = false;
  for (auto& [id, connection] : connections_) close(connection->fd);
  sd_event_source_disable_unref(ready_);
  sd_event_source_disable_unref(expiry_);
  sd_event_source_disable_unref(deferred_);
  close(epoll_fd_);
}

uint64_t PlainHttp::NowUsec() const {
  uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  return now;
}

bool PlainHttp::Start(const void* key, std::shared_ptr<const PlainHttpRequest> request,
                      Duration timeout, Done done) {
  auto [it, inserted] = runs_.try_emplace(key);
  if (!inserted) return false;
  it->second = std::make_unique<Run>();
  Run& run = *it->second;
  run.key = key;
  run.done = std::move(done);
  run.origin = &origins_[request->origin];
  run.request = std::move(request);
  run.queued_usec = NowUsec();
  run.deadline_usec = run.queued_usec + ToUsec(timeout);
  run.expiry = expiries_.emplace(run.deadline_usec, &run);
  ArmExpiry();
  run.waiting = true;
  run.place = run.origin->waiting.insert(run.origin->waiting.end(), &run);
  Admit(*run.origin);
  return true;
}

void PlainHttp::Cancel(const void* key) {
  auto it = runs_.find(key);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  if (!run.finished) {
    if (run.waiting) run.origin->waiting.erase(run.place);
    expiries_.erase(run.expiry);
    if (run.connection != nullptr) Close(*run.connection);  // mid-answer: not reusable
  }
  Origin* origin = run.origin;
  runs_.erase(it);
  Admit(*origin);
}

void PlainHttp::Admit(Origin& origin) {
  while (!origin.waiting.empty()) {
    Connection* idle = nullptr;
    while (!origin.idle.empty() && idle == nullptr) {
      idle = origin.idle.back();
      origin.idle.pop_back();
      --idle_count_;
      if (NowUsec() - idle->idle_since_usec > kMaxIdleUsec) {
        Close(*idle);
        idle = nullptr;
      }
    }
    if (idle == nullptr && origin.open >= kMaxOriginConnections) return;
    const uint64_t now = NowUsec();
    Run* oldest = origin.waiting.front();
    const bool behind =
        now - oldest->queued_usec > (oldest->deadline_usec - oldest->queued_usec) / 2;
    Run* run = behind ? origin.waiting.back() : oldest;
    origin.waiting.erase(run->place);
    run->waiting = false;
    Assign(*run, idle);
  }
}

void PlainHttp::Assign(Run& run, Connection* idle) {
  run.started_usec = NowUsec();
  if (idle == nullptr) {
    Connect(run);
    return;
  }
  Connection& connection = *idle;
  connection.run = &run;
  run.connection = &connection;
  StartAnswer(connection);
  run.outcome.new_connection = false;
  run.outcome.phase = PlainHttpOutcome::Phase::kWaiting;
  Send(connection);
}

void PlainHttp::Connect(Run& run) {
  const PlainHttpRequest& request = *run.request;
  const int fd =
      socket(request.address.any.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Fail(run, PlainHttpOutcome::Failure::kResources,
         std::string("could not open a socket: ") + std::strerror(errno));
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto owned = std::make_unique<Connection>();
  Connection& connection = *owned;
  connection.id = next_connection_id_++;
  connection.fd = fd;
  connection.origin = run.origin;
  connection.connect_usec = NowUsec();
  connections_.emplace(connection.id, std::move(owned));
  ++run.origin->open;
  ++new_connections_;
  connection.run = &run;
  run.connection = &connection;
  StartAnswer(connection);
  run.outcome.new_connection = true;
  run.outcome.phase = PlainHttpOutcome::Phase::kConnecting;

  if (connect(fd, &request.address.any, request.address_length) == 0) {
    connection.connected = true;
    run.outcome.connect_seconds = Seconds(NowUsec() - connection.connect_usec);
    run.outcome.phase = PlainHttpOutcome::Phase::kWaiting;
    Watch(connection, EPOLLIN | EPOLLRDHUP);
    Send(connection);
  } else if (errno == EINPROGRESS) {
    Watch(connection, EPOLLOUT);
  } else {
    run.outcome.connect_errno = errno;
    Fail(run, PlainHttpOutcome::Failure::kConnect);
  }
}

void PlainHttp::StartAnswer(Connection& connection) {
  http_parser_init(&connection.parser, HTTP_RESPONSE);
  connection.parser.data = &connection;
  connection.sent = 0;
  connection.complete = false;
  connection.informational = false;
  connection.body_too_large = false;
}

void PlainHttp::Watch(Connection& connection, uint32_t events) {
  if (connection.events == events) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = connection.id;
  const int op = connection.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(epoll_fd_, op, connection.fd, &event) == 0) connection.events = events;
}

void PlainHttp::Send(Connection& connection) {
  const std::string& bytes = connection.run->request->bytes;
  while (connection.sent < bytes.size()) {
    const ssize_t sent = send(connection.fd, bytes.data() + connection.sent,
                              bytes.size() - connection.sent, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        Watch(connection, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        return;
      }
      Lost(connection, errno);
      return;
    }
    connection.sent += static_cast<size_t>(sent);
  }
  connection.run->sent_usec = NowUsec();
  Watch(connection, EPOLLIN | EPOLLRDHUP);
}

int PlainHttp::OnReady(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/, void* self) {
  auto* client = static_cast<PlainHttp*>(self);
  epoll_event events[kReadyBatch];
  const int count = epoll_wait(client->epoll_fd_, events, kReadyBatch, 0);
  for (int i = 0; i < count; ++i) {
    auto it = client->connections_.find(events[i].data.u64);
    if (it == client->connections_.end()) continue;  // closed by an earlier event
    client->OnEvents(*it->second, events[i].events);
  }
  client->DispatchFinished();
  return 0;
}

void PlainHttp::OnEvents(Connection& connection, uint32_t events) {
  if (connection.run == nullptr) {
    // Idle: the peer closed it, or sent something nobody asked for. Either way it is no
    // longer a connection to send a request on.
    Origin& origin = *connection.origin;
    const auto place = std::find(origin.idle.begin(), origin.idle.end(), &connection);
    if (place != origin.idle.end()) {
      origin.idle.erase(place);
      --idle_count_;
    }
    Close(connection);
    return;
  }
  Run& run = *connection.run;
  if (!connection.connected) {
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error == 0 && (events & (EPOLLERR | EPOLLHUP)) != 0) error = ECONNREFUSED;
    if (error != 0) {
      run.outcome.connect_errno = error;
      Fail(run, PlainHttpOutcome::Failure::kConnect);
      return;
    }
    connection.connected = true;
    run.outcome.connect_seconds = Seconds(NowUsec() - connection.connect_usec);
    run.outcome.phase = PlainHttpOutcome::Phase::kWaiting;
    Send(connection);
    return;
  }
  if ((events & EPOLLOUT) != 0 && connection.sent < run.request->bytes.size()) {
    Send(connection);
    return;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) Receive(connection);
}

void PlainHttp::Receive(Connection& connection) {
  // parser.data is the Connection (StartAnswer), whose run is set while it reads.
  static const http_parser_settings kSettings = [] {
    http_parser_settings settings{};
    settings.on_headers_complete = [](http_parser* parser) {
      Connection& c = *static_cast<Connection*>(parser->data);
      Run& run = *c.run;
      run.outcome.status = static_cast<int>(parser->status_code);
      c.informational = parser->status_code >= 100 && parser->status_code < 200;
      if (c.informational) return 0;
      if (run.request->head) return 1;  // no body follows, whatever the head says
      if (parser->content_length != ULLONG_MAX && parser->content_length > kMaxBodyBytes) {
        c.body_too_large = true;
        return -1;
      }
      return 0;
    };
    settings.on_body = [](http_parser* parser, const char* data, size_t length) {
      Connection& c = *static_cast<Connection*>(parser->data);
      std::string& body = c.run->outcome.body;
      if (body.size() + length > kMaxBodyBytes) {
        c.body_too_large = true;
        return -1;
      }
      body.append(data, length);
      return 0;
    };
    settings.on_message_complete = [](http_parser* parser) {
      Connection& c = *static_cast<Connection*>(parser->data);
      if (c.informational) {  // "100 Continue" and the like: the answer comes after
        c.informational = false;
        c.run->outcome.status = 0;
        return 0;
      }
      c.complete = true;
      http_parser_pause(parser, 1);  // anything after the answer is not read as another
      return 0;
    };
    return settings;
  }();

  Run& run = *connection.run;
  for (;;) {
    const ssize_t received = recv(connection.fd, buffer_.get(), kReadBytes, 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Lost(connection, errno);
      return;
    }
    if (received == 0) {
      // The end of a body read until the connection closes (HTTP/1.0 style) completes it.
      if (run.outcome.received) http_parser_execute(&connection.parser, &kSettings, nullptr, 0);
      if (connection.complete) {
        Answered(connection, /*clean=*/false);
      } else {
        Lost(connection, 0);
      }
      return;
    }
    if (!run.outcome.received) {
      run.outcome.received = true;
      run.outcome.first_byte_seconds = Seconds(NowUsec() - run.sent_usec);
      run.outcome.phase = PlainHttpOutcome::Phase::kReading;
    }
    const size_t length = static_cast<size_t>(received);
    const size_t parsed =
        http_parser_execute(&connection.parser, &kSettings, buffer_.get(), length);
    if (connection.complete) {
      // Bytes past the answer: the connection is in no state to be reused.
      Answered(connection, /*clean=*/parsed == length);
      return;
    }
    const auto error = HTTP_PARSER_ERRNO(&connection.parser);
    if (error != HPE_OK) {
      if (connection.body_too_large) {
        Fail(run, PlainHttpOutcome::Failure::kBodyTooLarge);
      } else {
        Fail(run, PlainHttpOutcome::Failure::kMalformed,
             std::string("malformed HTTP response: ") + http_errno_description(error));
      }
      return;
    }
    if (length < kReadBytes) return;  // most likely all there was: epoll says if not
  }
}

void PlainHttp::Answered(Connection& connection, bool clean) {
  Run& run = *connection.run;
  const bool keep = clean && http_should_keep_alive(&connection.parser) != 0;
  Finish(run, keep);
}

void PlainHttp::Lost(Connection& connection, int error) {
  Run& run = *connection.run;
  if (!run.outcome.received && connection.reused && !run.retried) {
    // The peer closed a kept-alive connection as the request went out: send it once more
    // on a connection of its own.
    run.retried = true;
    run.connection = nullptr;
    connection.run = nullptr;
    Close(connection);
    Connect(run);
    return;
  }
  std::string detail;
  if (error != 0) detail = std::strerror(error);
  Fail(run, PlainHttpOutcome::Failure::kClosed, std::move(detail));
}

void PlainHttp::Fail(Run& run, PlainHttpOutcome::Failure failure, std::string detail) {
  run.outcome.failure = failure;
  run.outcome.detail = std::move(detail);
  Finish(run, /*keep_connection=*/false);
}

void PlainHttp::Finish(Run& run, bool keep_connection) {
  const uint64_t now = NowUsec();
  run.finished = true;
  if (run.waiting) {
    run.origin->waiting.erase(run.place);
    run.waiting = false;
  }
  expiries_.erase(run.expiry);
  if (run.started_usec != 0) run.outcome.total_seconds = Seconds(now - run.started_usec);
  if (run.connection != nullptr) {
    Connection& connection = *run.connection;
    run.connection = nullptr;
    connection.run = nullptr;
    if (keep_connection && idle_count_ < kMaxIdleConnections) {
      connection.reused = true;
      connection.idle_since_usec = now;
      connection.origin->idle.push_back(&connection);
      ++idle_count_;
    } else {
      Close(connection);
    }
  }
  finished_.push_back(run.key);
  sd_event_source_set_enabled(deferred_, SD_EVENT_ONESHOT);
  Admit(*run.origin);
}

void PlainHttp::Close(Connection& connection) {
  close(connection.fd);  // also leaves the epoll set: the descriptor is not shared
  --connection.origin->open;
  if (connection.run != nullptr) connection.run->connection = nullptr;
  connections_.erase(connection.id);
}

void PlainHttp::ArmExpiry() {
  if (expiries_.empty()) {
    if (expiry_armed_usec_ != 0) sd_event_source_set_enabled(expiry_, SD_EVENT_OFF);
    expiry_armed_usec_ = 0;
    return;
  }
  const uint64_t next = expiries_.begin()->first;
  if (expiry_armed_usec_ != 0 && expiry_armed_usec_ <= next) return;
  expiry_armed_usec_ = next;
  sd_event_source_set_time(expiry_, next);
  sd_event_source_set_enabled(expiry_, SD_EVENT_ONESHOT);
}

int PlainHttp::OnExpiry(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
  auto* client = static_cast<PlainHttp*>(self);
  client->expiry_armed_usec_ = 0;
  const uint64_t now = client->NowUsec();
  while (!client->expiries_.empty() && client->expiries_.begin()->first <= now) {
    Run& run = *client->expiries_.begin()->second;
    client->Fail(run, PlainHttpOutcome::Failure::kTimeout);
  }
  client->DispatchFinished();  // re-arms for the next deadline
  return 0;
}

int PlainHttp::OnDeferred(sd_event_source* /*source*/, void* self) {
  static_cast<PlainHttp*>(self)->DispatchFinished();
  return 0;
}

void PlainHttp::DispatchFinished() {
  // Called at the end of every dispatch that finished runs: the deferred source is only
  // for runs finished elsewhere (Start, Cancel), and would cost an idle loop iteration.
  sd_event_source_set_enabled(deferred_, SD_EVENT_OFF);
  ArmExpiry();
  const std::shared_ptr<bool> alive = alive_;
  std::vector<const void*> keys;
  keys.swap(finished_);
  for (const void* key : keys) {
    auto it = runs_.find(key);
    if (it == runs_.end() || !it->second->finished) continue;  // cancelled since
    std::unique_ptr<Run> run = std::move(it->second);
    runs_.erase(it);
    Done done = std::move(run->done);
    PlainHttpOutcome outcome = std::move(run->outcome);
    run.reset();
    done(std::move(outcome));
    if (!*alive) return;
  }
}

}  // namespace rollguard
