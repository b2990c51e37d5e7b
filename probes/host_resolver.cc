#include "probes/host_resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <utility>

namespace rollguard {

// Shared by the loop side and glibc's notification thread: whichever lets go last frees
// it, so a cancelled lookup that glibc still runs never touches freed memory.
struct HostResolver::State {
  ~State() {
    source = sd_event_source_disable_unref(source);
    if (request.ar_result != nullptr) freeaddrinfo(request.ar_result);
    if (event_fd >= 0) ::close(event_fd);
  }

  std::string host;
  addrinfo hints{};
  gaicb request{};
  int event_fd = -1;
  sd_event_source* source = nullptr;
  Done done;
  std::string numeric;  // set when no lookup was needed
  std::string failure;  // set when getaddrinfo_a() refused the request
  void* box = nullptr;  // the notification's reference (a std::shared_ptr<State>*)
};

namespace {

// Runs on glibc's thread when the lookup finished: wakes the loop.
void Notify(sigval value) {
  auto* box = static_cast<std::shared_ptr<HostResolver::State>*>(value.sival_ptr);
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t ignored = ::write((*box)->event_fd, &one, sizeof(one));
  delete box;
}

std::string Numeric(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text,
                sizeof(text));
  } else if (address->sa_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
                sizeof(text));
  }
  return text;
}

}  // namespace

HostResolver::~HostResolver() { Cancel(); }

bool HostResolver::IsNumeric(const std::string& host) {
  in6_addr v6{};
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

bool HostResolver::Start(sd_event* event, const std::string& host, Done done) {
  Cancel();
  auto state = std::make_shared<State>();
  state->host = host;
  state->done = std::move(done);
  state->event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state->event_fd < 0 || sd_event_add_io(event, &state->source, state->event_fd, EPOLLIN,
                                             &HostResolver::OnReady, this) < 0) {
    state->source = nullptr;
    return false;
  }
  state_ = state;
  if (IsNumeric(host)) {
    state->numeric = host;
    Wake(*state);
    return true;
  }
  state->hints.ai_family = AF_UNSPEC;
  state->hints.ai_socktype = SOCK_STREAM;
  state->hints.ai_flags = AI_ADDRCONFIG;
  state->request.ar_name = state->host.c_str();
  state->request.ar_request = &state->hints;
  sigevent notify{};
  notify.sigev_notify = SIGEV_THREAD;
  notify.sigev_notify_function = &Notify;
  auto* box = new std::shared_ptr<State>(state);
  notify.sigev_value.sival_ptr = box;
  gaicb* list[] = {&state->request};
  const int status = getaddrinfo_a(GAI_NOWAIT, list, 1, &notify);
  if (status != 0) {
    delete box;
    state->request.ar_name = nullptr;
    state->failure = gai_strerror(status);
    Wake(*state);
    return true;
  }
  state->box = box;
  return true;
}

void HostResolver::Wake(State& state) {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t ignored = ::write(state.event_fd, &one, sizeof(one));
}

int HostResolver::OnReady(sd_event_source* /*source*/, int fd, uint32_t /*revents*/, void* self) {
  auto* resolver = static_cast<HostResolver*>(self);
  uint64_t count = 0;
  [[maybe_unused]] const ssize_t ignored = ::read(fd, &count, sizeof(count));
  std::shared_ptr<State> finished = std::move(resolver->state_);
  resolver->state_ = nullptr;
  std::vector<std::string> addresses;
  if (!finished->numeric.empty()) addresses.push_back(finished->numeric);
  std::string error;
  if (addresses.empty() && finished->failure.empty()) {
    const int status = gai_error(&finished->request);
    if (status == 0) {
      for (const addrinfo* info = finished->request.ar_result; info != nullptr;
           info = info->ai_next) {
        const std::string address = Numeric(info->ai_addr);
        if (!address.empty() &&
            std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
          addresses.push_back(address);
        }
      }
    }
    if (addresses.empty()) finished->failure = status == 0 ? "no address" : gai_strerror(status);
  }
  if (addresses.empty()) {
    error = "DNS lookup of " + finished->host + " failed: " + finished->failure;
  }
  Done call = std::move(finished->done);
  finished->source = sd_event_source_disable_unref(finished->source);
  finished.reset();
  call(addresses, error);  // last: may destroy the resolver
  return 0;
}

void HostResolver::Cancel() {
  if (state_ == nullptr) return;
  state_->source = sd_event_source_disable_unref(state_->source);
  state_->done = nullptr;
  // A request glibc had not started yet is dropped without a notification: its reference
  // is released here. One already running notifies (and releases it) when done.
  if (state_->box != nullptr && gai_cancel(&state_->request) == EAI_CANCELED) {
    delete static_cast<std::shared_ptr<State>*>(state_->box);
  }
  state_ = nullptr;
}

}  // namespace rollguard
