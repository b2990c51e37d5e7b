#include "probes/redis_call.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/deferred_call.h"
#include "probes/host_resolver.h"

namespace rollguard {

RedisEventAdapter::~RedisEventAdapter() { io_ = sd_event_source_disable_unref(io_); }

bool RedisEventAdapter::Attach(sd_event* event, redisAsyncContext* context,
                               std::function<void()> after_events) {
  if (context->ev.data != nullptr) return false;
  event_ = event;
  after_events_ = std::move(after_events);
  context_ = context;
  context->ev.data = this;
  context->ev.addRead = &RedisEventAdapter::AddRead;
  context->ev.delRead = &RedisEventAdapter::DelRead;
  context->ev.addWrite = &RedisEventAdapter::AddWrite;
  context->ev.delWrite = &RedisEventAdapter::DelWrite;
  context->ev.cleanup = &RedisEventAdapter::Cleanup;
  return true;
}

void RedisEventAdapter::AddRead(void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  adapter->Update(adapter->events_ | EPOLLIN);
}

void RedisEventAdapter::DelRead(void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  adapter->Update(adapter->events_ & ~static_cast<uint32_t>(EPOLLIN));
}

void RedisEventAdapter::AddWrite(void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  adapter->Update(adapter->events_ | EPOLLOUT);
}

void RedisEventAdapter::DelWrite(void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  adapter->Update(adapter->events_ & ~static_cast<uint32_t>(EPOLLOUT));
}

// hiredis is freeing the context (on error, on disconnect, or by redisAsyncFree): the
// socket is about to be closed.
void RedisEventAdapter::Cleanup(void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  adapter->io_ = sd_event_source_disable_unref(adapter->io_);
  adapter->events_ = 0;
  adapter->context_ = nullptr;
}

void RedisEventAdapter::Update(uint32_t events) {
  if (context_ == nullptr || events == events_) return;
  events_ = events;
  if (io_ == nullptr) {
    if (events == 0) return;
    if (sd_event_add_io(event_, &io_, context_->c.fd, events, &RedisEventAdapter::OnIo, this) < 0) {
      io_ = nullptr;
      failed_ = true;
    }
    return;
  }
  // An io source cannot wait for nothing: it is switched off instead.
  if (events == 0) {
    sd_event_source_set_enabled(io_, SD_EVENT_OFF);
  } else if (sd_event_source_set_io_events(io_, events) < 0 ||
             sd_event_source_set_enabled(io_, SD_EVENT_ON) < 0) {
    failed_ = true;
  }
}

int RedisEventAdapter::OnIo(sd_event_source* /*source*/, int /*fd*/, uint32_t revents, void* self) {
  auto* adapter = static_cast<RedisEventAdapter*>(self);
  constexpr uint32_t kTrouble = EPOLLERR | EPOLLHUP;
  // Errors and hang-ups go to whichever handler hiredis waits on, so it reads the error.
  if ((revents & (EPOLLIN | kTrouble)) != 0 && (adapter->events_ & EPOLLIN) != 0) {
    redisAsyncHandleRead(adapter->context_);
  }
  // The read may have freed the context (Cleanup() ran).
  if (adapter->context_ != nullptr && (revents & (EPOLLOUT | kTrouble)) != 0 &&
      (adapter->events_ & EPOLLOUT) != 0) {
    redisAsyncHandleWrite(adapter->context_);
  }
  // Copied: the call may destroy the adapter.
  const std::function<void()> after = adapter->after_events_;
  if (after) after();
  return 0;
}

namespace {

std::string Scrub(std::string text, const std::string& secret) {
  if (!secret.empty()) {
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "<secret>");
    }
  }
  return text;
}

// hiredis's connection errors are capitalised strerror() texts; the tcp probe's wording.
std::string ConnectionError(const char* errstr, bool connected) {
  const std::string text = errstr != nullptr && errstr[0] != '\0' ? errstr : "unknown error";
  if (text == "Connection refused") return "connection refused";
  return (connected ? "connection lost: " : "could not connect: ") + text;
}

RedisValue Convert(const redisReply& reply) {
  RedisValue value;
  switch (reply.type) {
    case REDIS_REPLY_INTEGER:
      value.type = RedisValue::Type::kInteger;
      value.integer = reply.integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      value.type =
          reply.type == REDIS_REPLY_STRING ? RedisValue::Type::kString : RedisValue::Type::kStatus;
      value.text.assign(reply.str != nullptr ? reply.str : "", reply.len);
      break;
    case REDIS_REPLY_ARRAY:
      value.type = RedisValue::Type::kArray;
      for (size_t i = 0; i < reply.elements; ++i) {
        if (reply.element[i] != nullptr) value.elements.push_back(Convert(*reply.element[i]));
      }
      break;
    default:
      break;
  }
  return value;
}

}  // namespace

class RedisCall::Impl {
 public:
  explicit Impl(sd_event* event) : event_(event) {}
  ~Impl() { Close(); }

  void Start(const RedisTarget& target, std::vector<std::string> argv, Done done) {
    Cancel();
    target_ = target;
    command_ = std::move(argv);
    done_ = std::move(done);
    start_ = std::chrono::steady_clock::now();
    if (sd_event_add_time_relative(
            event_, &timer_, CLOCK_MONOTONIC,
            std::chrono::duration_cast<std::chrono::microseconds>(target_.timeout).count(), 1000,
            &Impl::OnTimer, this) < 0) {
      timer_ = nullptr;
      FailSoon("could not arm the timeout timer");
      return;
    }
    if (HostResolver::IsNumeric(target_.host)) {
      Connect({target_.host});
      return;
    }
    if (!resolver_.Start(
            event_, target_.host,
            [this](const std::vector<std::string>& addresses, const std::string& error) {
              if (error.empty()) {
                Connect(addresses);
              } else {
                FailSoon(error);
              }
            })) {
      FailSoon("could not start the DNS lookup");
    }
  }

  void Cancel() {
    deferred_.Cancel();
    Close();
    done_ = nullptr;
  }

 private:
  enum class Stage { kAuth, kSelect, kCommand };

  // Connects to the first of the numeric `addresses` that accepts (the next one is tried
  // when a connection attempt fails, like libpq and curl do) and queues AUTH, SELECT and
  // the command. Failures are delivered from the loop (this may run inside Start()).
  void Connect(std::vector<std::string> addresses) {
    addresses_ = std::move(addresses);
    next_address_ = 0;
    ConnectNext();
  }

  void ConnectNext() {
    const std::string& address = addresses_.at(next_address_++);
    context_ = redisAsyncConnect(address.c_str(), target_.port);
    if (context_ == nullptr) {
      FailSoon("could not start a connection (out of memory?)");
      return;
    }
    if (context_->err != 0) {
      const std::string error = ConnectionError(context_->errstr, false);
      if (next_address_ < addresses_.size()) {
        DropConnection();
        ConnectNext();
        return;
      }
      FailSoon(error);
      return;
    }
    adapter_ = std::make_unique<RedisEventAdapter>();
    adapter_->Attach(event_, context_, [this] { AfterEvents(); });
    context_->data = this;
    redisAsyncSetConnectCallback(context_, &Impl::OnConnect);

    if (!target_.password.empty()) Send(Stage::kAuth, {"AUTH", target_.password});
    if (target_.db != 0) Send(Stage::kSelect, {"SELECT", std::to_string(target_.db)});
    Send(Stage::kCommand, command_);
    if (outcome_) {
      FailSoon(outcome_->error);
      return;
    }
    if (adapter_->failed()) FailSoon("could not watch the connection's socket");
  }

  void Send(Stage stage, const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& word : argv) {
      pointers.push_back(word.c_str());
      lengths.push_back(word.size());
    }
    if (redisAsyncCommandArgv(context_, &Impl::OnReply, this, static_cast<int>(argv.size()),
                              pointers.data(), lengths.data()) != REDIS_OK) {
      if (!outcome_) outcome_ = Error("could not queue a command (out of memory?)");
      return;
    }
    stages_.push_back(stage);
  }

  static void OnConnect(const redisAsyncContext* context, int status) {
    auto* call = static_cast<Impl*>(context->data);
    if (status == REDIS_OK) call->connected_ = true;
  }

  // Replies arrive in the order the commands were sent. A null reply means hiredis is
  // dropping the command: the connection failed, or Close() is freeing the context.
  static void OnReply(redisAsyncContext* context, void* raw_reply, void* self) {
    auto* call = static_cast<Impl*>(self);
    if (call->stages_.empty()) return;
    const Stage stage = call->stages_.front();
    call->stages_.erase(call->stages_.begin());
    if (call->closing_ || call->outcome_) return;
    const auto* reply = static_cast<const redisReply*>(raw_reply);
    if (reply == nullptr) {
      call->outcome_ = call->Error(ConnectionError(context->errstr, call->connected_));
      return;
    }
    const std::string_view text(reply->str != nullptr ? reply->str : "", reply->len);
    if (reply->type == REDIS_REPLY_ERROR) {
      switch (stage) {
        case Stage::kAuth: {
          // The first reply also carries refusals that have nothing to do with the
          // password ("ERR max number of clients reached"): only name authentication when
          // the server does.
          const bool about_password =
              StartsWith(text, "WRONGPASS") || text.find("password") != std::string_view::npos;
          call->outcome_ = call->Error(
              std::string(about_password ? "authentication (AUTH) failed: " : "AUTH failed: ") +
              std::string(text));
          return;
        }
        case Stage::kSelect:
          call->outcome_ = call->Error("SELECT " + std::to_string(call->target_.db) +
                                       " failed: " + std::string(text));
          return;
        case Stage::kCommand:
          call->outcome_ = call->Error(call->command_.at(0) + " failed: " + std::string(text));
          return;
      }
    }
    if (stage != Stage::kCommand) return;
    RedisCallResult result;
    result.value = Convert(*reply);
    result.elapsed = std::chrono::steady_clock::now() - call->start_;
    call->outcome_ = std::move(result);
  }

  static int OnTimer(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
    auto* call = static_cast<Impl*>(self);
    RedisCallResult result =
        call->Error("timed out after " + FormatDuration(call->target_.timeout) +
                    (call->resolver_.busy() ? " resolving the host name"
                     : call->connected_     ? " waiting for the reply"
                                            : " while connecting"));
    call->Close();
    call->Finish(std::move(result));
    return 0;
  }

  // After hiredis handled the socket's events, outside every hiredis callback: the only
  // place where a call ends and the context is freed (hiredis forbids freeing it from its
  // own callbacks, and `done` may destroy this object).
  void AfterEvents() {
    if (!outcome_ && adapter_->failed()) outcome_ = Error("could not watch the socket");
    if (!outcome_ && !adapter_->attached()) {
      outcome_ = Error(ConnectionError("connection closed", connected_));
    }
    if (!outcome_) return;
    if (!connected_ && !outcome_->error.empty() && next_address_ < addresses_.size()) {
      DropConnection();
      ConnectNext();
      return;
    }
    RedisCallResult result = std::move(*outcome_);
    Close();
    Finish(std::move(result));
  }

  RedisCallResult Error(std::string error) const {
    RedisCallResult result;
    result.elapsed = std::chrono::steady_clock::now() - start_;
    result.error = Scrub(std::move(error), target_.password);
    return result;
  }

  void FailSoon(std::string error) {
    Close();
    deferred_.Schedule(event_, [this, error = std::move(error)] {
      RedisCallResult result = Error(error);
      Finish(std::move(result));
    });
  }

  void Finish(RedisCallResult result) {
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this call
  }

  // Frees the context (closing its socket without a QUIT) unless hiredis already did.
  void Close() {
    resolver_.Cancel();
    timer_ = sd_event_source_disable_unref(timer_);
    DropConnection();
    addresses_.clear();
    next_address_ = 0;
  }

  // Frees the context of the current connection attempt, if any.
  void DropConnection() {
    if (context_ != nullptr) {
      closing_ = true;
      const bool attached = adapter_ == nullptr || adapter_->attached();
      if (attached) redisAsyncFree(context_);
      closing_ = false;
    }
    context_ = nullptr;
    adapter_.reset();
    stages_.clear();
    outcome_.reset();
    connected_ = false;
  }

  sd_event* event_;
  RedisTarget target_;
  std::vector<std::string> command_;
  redisAsyncContext* context_ = nullptr;
  std::unique_ptr<RedisEventAdapter> adapter_;
  sd_event_source* timer_ = nullptr;
  std::chrono::steady_clock::time_point start_;
  std::vector<Stage> stages_;
  std::optional<RedisCallResult> outcome_;
  bool connected_ = false;
  bool closing_ = false;
  std::vector<std::string> addresses_;  // numeric, to try in turn
  size_t next_address_ = 0;
  HostResolver resolver_;
  DeferredCall deferred_;
  Done done_;
};

RedisCall::RedisCall(sd_event* event) : impl_(std::make_unique<Impl>(event)) {}
RedisCall::~RedisCall() = default;

void RedisCall::Start(const RedisTarget& target, std::vector<std::string> argv, Done done) {
  impl_->Start(target, std::move(argv), std::move(done));
}

void RedisCall::Cancel() { impl_->Cancel(); }

}  // namespace rollguard
