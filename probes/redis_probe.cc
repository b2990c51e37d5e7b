#include "probes/redis_probe.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/deferred_call.h"
#include "probes/host_resolver.h"
#include "probes/probe_keys.h"
#include "probes/tcp_probe.h"

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

struct RedisOptions {
  Duration timeout;
  TcpAddress address;
  std::string password;  // secret; empty when not configured
  int db = 0;
  std::vector<std::string> command = {"PING"};
};

std::string Scrub(std::string text, const std::string& secret) {
  if (!secret.empty()) {
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "<secret>");
    }
  }
  return text;
}

std::optional<double> ParseNumber(std::string_view text) {
  if (text.empty()) return std::nullopt;
  const std::string copy(text);
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || std::isspace(static_cast<unsigned char>(copy[0]))) {
    return std::nullopt;
  }
  return value;
}

// hiredis's connection errors are capitalised strerror() texts; the tcp probe's wording.
std::string ConnectionError(const char* errstr, bool connected) {
  const std::string text = errstr != nullptr && errstr[0] != '\0' ? errstr : "unknown error";
  if (text == "Connection refused") return "connection refused";
  return (connected ? "connection lost: " : "could not connect: ") + text;
}

class RedisProbe final : public Probe {
 public:
  RedisProbe(std::shared_ptr<const RedisOptions> options, sd_event* event)
      : options_(std::move(options)), event_(event) {}
  ~RedisProbe() override { Cancel(); }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    start_ = std::chrono::steady_clock::now();
    if (sd_event_add_time_relative(
            event_, &timer_, CLOCK_MONOTONIC,
            std::chrono::duration_cast<std::chrono::microseconds>(options_->timeout).count(), 1000,
            &RedisProbe::OnTimer, this) < 0) {
      timer_ = nullptr;
      FailSoon("could not arm the timeout timer");
      return;
    }
    const std::string& host = options_->address.host;
    if (HostResolver::IsNumeric(host)) {
      Connect({host});
      return;
    }
    // hiredis would resolve a name with the blocking getaddrinfo().
    if (!resolver_.Start(
            event_, host,
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
    context_ = redisAsyncConnect(address.c_str(), options_->address.port);
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
    redisAsyncSetConnectCallback(context_, &RedisProbe::OnConnect);

    if (!options_->password.empty()) {
      Send(Stage::kAuth, {"AUTH", options_->password});
    }
    if (options_->db != 0) Send(Stage::kSelect, {"SELECT", std::to_string(options_->db)});
    Send(Stage::kCommand, options_->command);
    if (outcome_) {
      FailSoon(outcome_->error);
      return;
    }
    if (adapter_->failed()) FailSoon("could not watch the connection's socket");
  }

  void Cancel() override {
    deferred_.Cancel();
    Close();
    done_ = nullptr;
  }

 private:
  enum class Stage { kAuth, kSelect, kCommand };

  void Send(Stage stage, const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& word : argv) {
      pointers.push_back(word.c_str());
      lengths.push_back(word.size());
    }
    if (redisAsyncCommandArgv(context_, &RedisProbe::OnReply, this, static_cast<int>(argv.size()),
                              pointers.data(), lengths.data()) != REDIS_OK) {
      if (!outcome_) outcome_ = Error("could not queue a command (out of memory?)");
      return;
    }
    stages_.push_back(stage);
  }

  static void OnConnect(const redisAsyncContext* context, int status) {
    auto* probe = static_cast<RedisProbe*>(context->data);
    if (status == REDIS_OK) probe->connected_ = true;
  }

  // Replies arrive in the order the commands were sent. A null reply means hiredis is
  // dropping the command: the connection failed, or Close() is freeing the context.
  static void OnReply(redisAsyncContext* context, void* raw_reply, void* self) {
    auto* probe = static_cast<RedisProbe*>(self);
    if (probe->stages_.empty()) return;
    const Stage stage = probe->stages_.front();
    probe->stages_.erase(probe->stages_.begin());
    if (probe->closing_ || probe->outcome_) return;
    const auto* reply = static_cast<const redisReply*>(raw_reply);
    if (reply == nullptr) {
      probe->outcome_ = probe->Error(ConnectionError(context->errstr, probe->connected_));
      return;
    }
    const std::string_view text(reply->str != nullptr ? reply->str : "", reply->len);
    const std::string& secret = probe->options_->password;
    if (reply->type == REDIS_REPLY_ERROR) {
      switch (stage) {
        case Stage::kAuth: {
          // The first reply also carries refusals that have nothing to do with the
          // password ("ERR max number of clients reached"): only name authentication when
          // the server does.
          const bool about_password =
              StartsWith(text, "WRONGPASS") || text.find("password") != std::string_view::npos;
          probe->outcome_ = probe->Error(
              std::string(about_password ? "authentication (AUTH) failed: " : "AUTH failed: ") +
              Scrub(std::string(text), secret));
          return;
        }
        case Stage::kSelect:
          probe->outcome_ = probe->Error("SELECT " + std::to_string(probe->options_->db) +
                                         " failed: " + Scrub(std::string(text), secret));
          return;
        case Stage::kCommand:
          probe->outcome_ = probe->Error(probe->options_->command[0] +
                                         " failed: " + Scrub(std::string(text), secret));
          return;
      }
    }
    if (stage != Stage::kCommand) return;
    ProbeResult result;
    result.up = true;
    result.latency_seconds = probe->Elapsed();
    std::optional<double> value;
    if (reply->type == REDIS_REPLY_INTEGER) {
      value = static_cast<double>(reply->integer);
    } else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
      value = ParseNumber(text);
    }
    if (value) result.fields["value"] = *value;
    probe->outcome_ = std::move(result);
  }

  static int OnTimer(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
    auto* probe = static_cast<RedisProbe*>(self);
    ProbeResult result =
        probe->Error("timed out after " + FormatDuration(probe->options_->timeout) +
                     (probe->resolver_.busy() ? " resolving the host name"
                      : probe->connected_     ? " waiting for the reply"
                                              : " while connecting"));
    probe->Close();
    probe->Finish(std::move(result));
    return 0;
  }

  // After hiredis handled the socket's events, outside every hiredis callback: the only
  // place where a run ends and the context is freed (hiredis forbids freeing it from its
  // own callbacks, and `done` may destroy this probe).
  void AfterEvents() {
    if (!outcome_ && adapter_->failed()) outcome_ = Error("could not watch the socket");
    if (!outcome_ && !adapter_->attached()) {
      outcome_ = Error(ConnectionError("connection closed", connected_));
    }
    if (!outcome_) return;
    if (!connected_ && !outcome_->up && next_address_ < addresses_.size()) {
      DropConnection();
      ConnectNext();
      return;
    }
    ProbeResult result = std::move(*outcome_);
    Close();
    Finish(std::move(result));
  }

  ProbeResult Error(std::string error) const {
    ProbeResult result;
    result.latency_seconds = Elapsed();
    result.error = Scrub(std::move(error), options_->password);
    return result;
  }

  void FailSoon(std::string error) {
    Close();
    deferred_.Schedule(event_, [this, error = std::move(error)] {
      ProbeResult result = Error(error);
      Finish(std::move(result));
    });
  }

  double Elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  void Finish(ProbeResult result) {
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this probe
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

  std::shared_ptr<const RedisOptions> options_;
  sd_event* event_;
  redisAsyncContext* context_ = nullptr;
  std::unique_ptr<RedisEventAdapter> adapter_;
  sd_event_source* timer_ = nullptr;
  std::chrono::steady_clock::time_point start_;
  std::vector<Stage> stages_;
  std::optional<ProbeResult> outcome_;
  bool connected_ = false;
  bool closing_ = false;
  std::vector<std::string> addresses_;  // numeric, to try in turn
  size_t next_address_ = 0;
  HostResolver resolver_;
  DeferredCall deferred_;
  ProbeDone done_;
};

class RedisProbeConfig final : public ProbeConfig {
 public:
  RedisProbeConfig(ProbeSpec spec, std::shared_ptr<const RedisOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<RedisProbe>(options_, context.event());
  }

 private:
  std::shared_ptr<const RedisOptions> options_;
};

}  // namespace

std::shared_ptr<const ProbeConfig> ParseRedisProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<RedisOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* entry = keys.Required("address")) {
    if (auto address = ParseTcpAddress(entry->value)) {
      options->address = *address;
    } else {
      keys.ErrorAt(*entry, "expected host:port or [ipv6]:port with a port from 1 to 65535, got " +
                               Quoted(entry->value));
    }
  }
  if (std::optional<std::string> password = keys.Secret("password_file")) {
    options->password = *password;
  }
  if (const IniEntry* entry = keys.Single("db")) {
    const std::string_view text = entry->value;
    int db = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), db);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() || db < 0) {
      keys.ErrorAt(*entry, "expected a database number (0, 1, ...), got " + Quoted(text));
    } else {
      options->db = db;
    }
  }
  if (const IniEntry* entry = keys.Single("command")) {
    SplitCommandResult split = SplitCommandLine(entry->value);
    if (!split.error.empty()) {
      keys.ErrorAt(*entry, "expected a Redis command such as PING or \"GET key\", got " +
                               Quoted(entry->value) + " (" + split.error + ")");
    } else {
      options->command = std::move(split.argv);
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<RedisProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
