#include "probes/curl_multi.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace rollguard {
namespace {

// sd-event coalesces timers within 250ms by default; curl's timers drive connect and
// request timeouts, so they should fire when asked.
constexpr uint64_t kTimerAccuracyUsec = 1000;
// A waiting transfer's deadline is a timeout, reported as such: 10 ms late is fine, and
// batches the expiry of a long queue into fewer wake-ups.
constexpr uint64_t kExpiryAccuracyUsec = 10'000;

constexpr size_t kOriginSlots = static_cast<size_t>(CurlMulti::kMaxHostConnections);

// Ready sockets taken per dispatch. More stay ready in the set, which stays readable, so
// the loop comes back for them after its other sources had their turn.
constexpr int kReadyBatch = 128;

// An epoll event's data: the socket's descriptor and the generation of its Watch.
uint64_t EventKey(int fd, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
}

}  // namespace

CurlMulti::CurlMulti(sd_event* event) : event_(event) {
  static const bool initialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == 0; }();
  if (!initialized) std::abort();  // OOM at startup: nothing sensible left to do
  multi_ = curl_multi_init();
  if (multi_ == nullptr) std::abort();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::OnSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::OnTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, kMaxCachedConnections);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, kMaxHostConnections);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0 ||
      sd_event_add_io(event_, &ready_, epoll_fd_, EPOLLIN, &CurlMulti::OnReady, this) < 0) {
    std::abort();  // out of descriptors or memory at startup
  }
  if (sd_event_add_time(event_, &timer_, CLOCK_MONOTONIC, 0, kTimerAccuracyUsec,
                        &CurlMulti::OnTimeout, this) < 0) {
    std::abort();
  }
  sd_event_source_set_enabled(timer_, SD_EVENT_OFF);
  if (sd_event_add_defer(event_, &kick_, &CurlMulti::OnKick, this) < 0) std::abort();
  sd_event_source_set_enabled(kick_, SD_EVENT_OFF);
  if (sd_event_add_time(event_, &expiry_, CLOCK_MONOTONIC, 0, kExpiryAccuracyUsec,
                        &CurlMulti::OnExpiry, this) < 0) {
    std::abort();
  }
  sd_event_source_set_enabled(expiry_, SD_EVENT_OFF);
}

CurlMulti::~CurlMulti() {
  *alive_ = false;
  for (const auto& [key, transfer] : transfers_) {
    if (transfer.state != State::kInCurl) continue;
    curl_multi_remove_handle(multi_, transfer.easy);
    if (transfer.origin != nullptr) curl_easy_cleanup(transfer.easy);  // the pool's
  }
  transfers_.clear();
  keys_.clear();
  // Closing cached connections may still call OnSocket(REMOVE); `this` is intact here.
  curl_multi_cleanup(multi_);
  // Sockets curl has not closed by now belong to no transfer; their registrations go
  // with the epoll set, the sockets were curl's to close.
  sockets_.clear();
  sd_event_source_disable_unref(ready_);
  close(epoll_fd_);
  sd_event_source_disable_unref(timer_);
  sd_event_source_disable_unref(kick_);
  sd_event_source_disable_unref(expiry_);
  for (CURL* easy : idle_easy_) curl_easy_cleanup(easy);
}

CURL* CurlMulti::TakeEasy() {
  CURL* easy = nullptr;
  if (idle_easy_.empty()) {
    easy = curl_easy_init();
  } else {
    easy = idle_easy_.back();
    idle_easy_.pop_back();
  }
  if (easy != nullptr) ++easy_in_use_;
  return easy;
}

void CurlMulti::GiveBackEasy(CURL* easy) {
  if (easy == nullptr) return;
  --easy_in_use_;
  if (idle_easy_.size() >= kMaxIdleEasyHandles) {
    curl_easy_cleanup(easy);
    return;
  }
  curl_easy_reset(easy);
  idle_easy_.push_back(easy);
}

bool CurlMulti::SetSocketCallbacks(CURL* easy) {
  return curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &CurlMulti::OnOpenSocket) == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this) == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &CurlMulti::OnCloseSocket) ==
             CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this) == CURLE_OK;
}

bool CurlMulti::Add(CURL* easy, Completion done) {
  auto [it, inserted] = transfers_.try_emplace(easy);
  if (!inserted) return false;
  if (!SetSocketCallbacks(easy) || curl_multi_add_handle(multi_, easy) != CURLM_OK) {
    transfers_.erase(it);
    return false;
  }
  it->second.done = std::move(done);
  it->second.serial = next_serial_++;
  it->second.easy = easy;
  keys_[easy] = easy;
  return true;
}

bool CurlMulti::AddQueued(const void* key, const std::string& origin, Duration timeout, Setup setup,
                          QueuedCompletion done) {
  auto [it, inserted] = transfers_.try_emplace(key);
  if (!inserted) return false;
  auto [queue_it, created] = origins_.try_emplace(origin);
  Origin& queue = queue_it->second;
  if (created) queue.name = origin;
  Transfer& transfer = it->second;
  const uint64_t now = NowUsec();
  transfer.setup = std::move(setup);
  transfer.origin = &queue;
  transfer.serial = next_serial_++;
  transfer.queued_usec = now;
  transfer.deadline_usec =
      now + static_cast<uint64_t>(std::max<Duration::rep>(timeout.count(), 1)) * 1000;
  if (queue.in_curl < kOriginSlots && queue.waiting.empty()) {
    if (!EnterCurl(key, transfer, now)) {
      transfers_.erase(it);
      DropIfIdle(queue);
      return false;
    }
  } else {
    transfer.state = State::kWaiting;
    transfer.place = queue.waiting.insert(queue.waiting.end(), key);
    ++waiting_count_;
    ArmExpiry(transfer.deadline_usec);
  }
  transfer.queued_done = std::move(done);
  return true;
}

bool CurlMulti::EnterCurl(const void* key, Transfer& transfer, uint64_t now_usec) {
  CURL* easy = TakeEasy();
  if (easy == nullptr) return false;
  const uint64_t left_ms = (transfer.deadline_usec - now_usec + 999) / 1000;
  if (!transfer.setup(easy) || !SetSocketCallbacks(easy) ||
      curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(left_ms)) !=  // NOLINT
          CURLE_OK ||
      curl_multi_add_handle(multi_, easy) != CURLM_OK) {
    GiveBackEasy(easy);
    return false;
  }
  transfer.setup = nullptr;  // what it captured is not needed any more
  transfer.easy = easy;
  transfer.state = State::kInCurl;
  keys_[easy] = key;
  ++transfer.origin->in_curl;
  return true;
}

void CurlMulti::LeftCurl(const Transfer& transfer) {
  if (transfer.origin == nullptr) return;
  --transfer.origin->in_curl;
  Admit(*transfer.origin);
  DropIfIdle(*transfer.origin);
}

void CurlMulti::Admit(Origin& origin) {
  while (origin.in_curl < kOriginSlots && !origin.waiting.empty()) {
    const uint64_t now = NowUsec();
    // Oldest first, unless the oldest has already spent half its time waiting: then the
    // queue is longer than the connections serve in time, and the oldest would enter curl
    // with too little time left, time out there, and take a warm connection with it
    // (curl closes a connection it abandons mid-response), making the backlog worse. So
    // the newest goes first, with its whole timeout ahead; the oldest expire where they
    // wait, which costs nothing.
    const Transfer& oldest = transfers_.at(origin.waiting.front());
    const bool behind = now - oldest.queued_usec > (oldest.deadline_usec - oldest.queued_usec) / 2;
    const void* key = behind ? origin.waiting.back() : origin.waiting.front();
    if (behind) {
      origin.waiting.pop_back();
    } else {
      origin.waiting.pop_front();
    }
    --waiting_count_;
    Transfer& transfer = transfers_.at(key);
    if (now >= transfer.deadline_usec) {
      EndWithoutCurl(key, transfer, CURLE_OPERATION_TIMEDOUT);
    } else if (!EnterCurl(key, transfer, now)) {
      EndWithoutCurl(key, transfer, CURLE_OUT_OF_MEMORY);
    }
  }
}

void CurlMulti::DropIfIdle(const Origin& origin) {
  if (origin.in_curl != 0 || !origin.waiting.empty()) return;
  const auto it = origins_.find(origin.name);
  if (it != origins_.end()) origins_.erase(it);
}

void CurlMulti::EndWithoutCurl(const void* key, Transfer& transfer, int code) {
  // Never completed on the spot: this runs inside Add, Remove and completions, whose
  // callers do not expect a callback there.
  transfer.state = State::kEnded;
  ended_.push_back(Ended{key, transfer.serial, code});
  sd_event_source_set_enabled(kick_, SD_EVENT_ONESHOT);
}

void CurlMulti::ArmExpiry(uint64_t deadline_usec) {
  if (expiry_armed_usec_ != 0 && expiry_armed_usec_ <= deadline_usec) return;
  expiry_armed_usec_ = deadline_usec;
  sd_event_source_set_time(expiry_, deadline_usec);
  sd_event_source_set_enabled(expiry_, SD_EVENT_ONESHOT);
}

int CurlMulti::OnExpiry(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
  auto* multi = static_cast<CurlMulti*>(self);
  multi->expiry_armed_usec_ = 0;
  const uint64_t now = multi->NowUsec();
  uint64_t next = 0;
  for (auto origin_it = multi->origins_.begin(); origin_it != multi->origins_.end();) {
    Origin& origin = origin_it->second;
    for (auto it = origin.waiting.begin(); it != origin.waiting.end();) {
      Transfer& transfer = multi->transfers_.at(*it);
      if (transfer.deadline_usec > now) {
        if (next == 0 || transfer.deadline_usec < next) next = transfer.deadline_usec;
        ++it;
        continue;
      }
      multi->EndWithoutCurl(*it, transfer, CURLE_OPERATION_TIMEDOUT);
      it = origin.waiting.erase(it);
      --multi->waiting_count_;
    }
    if (origin.in_curl == 0 && origin.waiting.empty()) {
      origin_it = multi->origins_.erase(origin_it);
    } else {
      ++origin_it;
    }
  }
  if (next != 0) multi->ArmExpiry(next);
  multi->DispatchCompleted();
  return 0;
}

uint64_t CurlMulti::NowUsec() const {
  uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  return now;
}

void CurlMulti::Remove(const void* key) {
  auto it = transfers_.find(key);
  if (it == transfers_.end()) return;
  const Transfer transfer = std::move(it->second);
  transfers_.erase(it);
  switch (transfer.state) {
    case State::kWaiting:
      transfer.origin->waiting.erase(transfer.place);
      --waiting_count_;
      DropIfIdle(*transfer.origin);
      break;
    case State::kInCurl:
      curl_multi_remove_handle(multi_, transfer.easy);
      keys_.erase(transfer.easy);
      if (transfer.origin != nullptr) GiveBackEasy(transfer.easy);
      LeftCurl(transfer);
      break;
    case State::kEnded:  // its Ended entry no longer matches anything
      break;
  }
}

int CurlMulti::OnSocket(CURL* /*easy*/, int fd, int what, void* self, void* socket) {
  return static_cast<CurlMulti*>(self)->UpdateSocket(fd, what, socket);
}

curl_socket_t CurlMulti::OnOpenSocket(void* self, curlsocktype /*purpose*/,
                                      curl_sockaddr* address) {
  // What curl's own opener does, plus close-on-exec: exec probes and actions fork, and
  // must not inherit connections.
  const int fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  static_cast<CurlMulti*>(self)->NewWatch(fd).owned = true;
  return fd;
}

int CurlMulti::OnCloseSocket(void* self, curl_socket_t fd) {
  // Unregistered while the descriptor is still open: epoll forgets a closed one by
  // itself only once no other process holds it (an exec child mid-fork may).
  static_cast<CurlMulti*>(self)->Unwatch(fd);
  return close(fd);
}

void CurlMulti::Unwatch(int fd) {
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  Deregister(fd, it->second);
  sockets_.erase(it);
}

CurlMulti::Watch& CurlMulti::NewWatch(int fd) {
  Watch& watch = sockets_[fd];
  // What was kept under this number is gone: its file is closed, and with it its epoll
  // registration.
  watch = Watch{};
  watch.generation = next_generation_++;
  if (watch.generation == 0) watch.generation = next_generation_++;  // after 2^32 sockets
  return watch;
}

bool CurlMulti::Register(int fd, Watch& watch, uint32_t events) {
  if (events == 0) {
    Deregister(fd, watch);
    return true;
  }
  if (watch.events == events) return true;  // no system call when nothing changes
  epoll_event event{};
  event.events = events;
  event.data.u64 = EventKey(fd, watch.generation);
  if (epoll_ctl(epoll_fd_, watch.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) < 0) {
    // A socket curl did not open through us can close without a word: its registration
    // died with it (ENOENT), or a stale one is still there under the same number (EEXIST).
    const int retry = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
    if (retry < 0 || epoll_ctl(epoll_fd_, retry, fd, &event) < 0) return false;
  }
  watch.events = events;
  return true;
}

void CurlMulti::Deregister(int fd, Watch& watch) {
  if (watch.events == 0) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);  // ENOENT: it went with its file
  watch.events = 0;
}

int CurlMulti::UpdateSocket(int fd, int what, void* known) {
  auto it = sockets_.find(fd);
  if (what == CURL_POLL_REMOVE) {
    if (it == sockets_.end()) return 0;
    Watch& watch = it->second;
    watch.wanted = false;
    // An owned socket usually goes back to the connection cache, to be watched for the
    // next response: it stays registered for EPOLLIN until OnCloseSocket (a peer closing
    // the idle connection wakes ActOnReady once, which then mutes it). Anything else, or
    // a socket left waiting to write, is unregistered now.
    if (watch.owned) {
      if (watch.events != EPOLLIN) Deregister(fd, watch);
      return 0;
    }
    Unwatch(fd);
    return 0;
  }
  uint32_t events = 0;
  if (what & CURL_POLL_IN) events |= EPOLLIN;
  if (what & CURL_POLL_OUT) events |= EPOLLOUT;
  if (it != sockets_.end() &&
      (it->second.owned || known == reinterpret_cast<void*>(uintptr_t{it->second.generation}))) {
    Watch& watch = it->second;
    watch.wanted = true;
    return Register(fd, watch, events) ? 0 : -1;
  }
  // A socket we did not open, that curl has not told us about yet. A Watch still kept
  // under the same fd belongs to one that was closed without a REMOVE, so it is replaced,
  // never reused.
  Watch& watch = NewWatch(fd);
  watch.wanted = true;
  if (!Register(fd, watch, events)) {
    sockets_.erase(fd);
    return -1;
  }
  curl_multi_assign(multi_, fd, reinterpret_cast<void*>(uintptr_t{watch.generation}));
  return 0;
}

int CurlMulti::OnTimer(CURLM* /*multi*/, long timeout_ms, void* self) {  // NOLINT
  static_cast<CurlMulti*>(self)->SetTimer(timeout_ms);
  return 0;
}

void CurlMulti::SetTimer(long timeout_ms) {  // NOLINT(runtime/int)
  if (timeout_ms <= 0) {
    sd_event_source_set_enabled(timer_, SD_EVENT_OFF);
    sd_event_source_set_enabled(kick_, timeout_ms == 0 ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
    return;
  }
  sd_event_source_set_enabled(kick_, SD_EVENT_OFF);
  uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  sd_event_source_set_time(timer_, now + static_cast<uint64_t>(timeout_ms) * 1000);
  sd_event_source_set_enabled(timer_, SD_EVENT_ONESHOT);
}

int CurlMulti::OnReady(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/, void* self) {
  static_cast<CurlMulti*>(self)->ActOnReady();
  return 0;
}

void CurlMulti::ActOnReady() {
  epoll_event ready[kReadyBatch];
  const int count = epoll_wait(epoll_fd_, ready, kReadyBatch, 0);
  int running = 0;
  for (int i = 0; i < count; ++i) {
    const int fd = static_cast<int>(static_cast<uint32_t>(ready[i].data.u64));
    const auto generation = static_cast<uint32_t>(ready[i].data.u64 >> 32);
    // An earlier socket in this batch may have closed this one, and a new socket may have
    // taken its number.
    auto it = sockets_.find(fd);
    if (it == sockets_.end() || it->second.generation != generation) continue;
    if (!it->second.wanted) {
      // An idle cached connection became readable: the peer closed it or sent something
      // unasked. Curl notices when it next picks the connection; until then it is muted
      // so a level-triggered EOF does not spin the loop.
      Deregister(fd, it->second);
      continue;
    }
    const uint32_t revents = ready[i].events;
    int mask = 0;
    if (revents & EPOLLIN) mask |= CURL_CSELECT_IN;
    if (revents & EPOLLOUT) mask |= CURL_CSELECT_OUT;
    if (revents & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(multi_, fd, mask, &running);
  }
  DispatchCompleted();
}

int CurlMulti::OnTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
  static_cast<CurlMulti*>(self)->Act(CURL_SOCKET_TIMEOUT, 0);
  return 0;
}

int CurlMulti::OnKick(sd_event_source* /*source*/, void* self) {
  static_cast<CurlMulti*>(self)->Act(CURL_SOCKET_TIMEOUT, 0);
  return 0;
}

void CurlMulti::Act(int fd, int event_mask) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, event_mask, &running);
  DispatchCompleted();
}

void CurlMulti::DispatchCompleted() {
  const std::shared_ptr<bool> alive = alive_;
  while (!ended_.empty()) {
    std::vector<Ended> batch;
    batch.swap(ended_);
    for (const Ended& ended : batch) {
      auto it = transfers_.find(ended.key);
      if (it == transfers_.end() || it->second.serial != ended.serial) continue;
      const Transfer transfer = std::move(it->second);
      transfers_.erase(it);
      if (transfer.queued_done) {
        transfer.queued_done(nullptr, ended.code);
      } else if (transfer.done) {
        transfer.done(ended.code);
      }
      if (!*alive) return;
    }
  }
  int queued = 0;
  while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
    if (message->msg != CURLMSG_DONE) continue;
    CURL* easy = message->easy_handle;
    const CURLcode code = message->data.result;
    // Removing the handle drops `message`; everything needed was copied above. Removal
    // comes before the callback so the callback owns a handle curl no longer touches.
    curl_multi_remove_handle(multi_, easy);
    const auto key = keys_.find(easy);
    if (key == keys_.end()) continue;
    const auto it = transfers_.find(key->second);
    keys_.erase(key);
    if (it == transfers_.end()) continue;
    const Transfer transfer = std::move(it->second);
    transfers_.erase(it);
    LeftCurl(transfer);
    if (transfer.origin == nullptr) {
      transfer.done(code);
      if (!*alive) return;
      continue;
    }
    transfer.queued_done(easy, code);
    if (!*alive) {
      curl_easy_cleanup(easy);  // nobody is left to give it back to
      return;
    }
    GiveBackEasy(easy);
  }
}

}  // namespace rollguard
