#include "probes/postgres_probe.h"

#include <libpq-fe.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/deferred_call.h"
#include "probes/host_resolver.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

struct PostgresOptions {
  Duration timeout;
  std::string dsn;
  std::string password;  // secret; empty when not configured
  std::string query = "SELECT 1";
  // The dsn's host when it is a single name libpq would resolve (blocking): the probe
  // resolves it on the loop first and passes `hostaddr`. Empty otherwise.
  std::string resolve_host;
};

// libpq's messages end in a newline and may span lines ("connection to server ... failed:
// FATAL: ..."); a log line wants one line. A secret never appears in them, but a message
// is scrubbed anyway in case a server echoes something back.
std::string CleanMessage(std::string_view message, const std::string& secret) {
  std::string text;
  size_t start = 0;
  while (start <= message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string_view::npos) end = message.size();
    const std::string_view line = Trim(message.substr(start, end - start));
    if (!line.empty()) text += (text.empty() ? "" : "; ") + std::string(line);
    start = end + 1;
  }
  if (!secret.empty()) {
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "<secret>");
    }
  }
  return text.empty() ? "unknown error" : text;
}

// The first column of the first row as a number: integers, floats, numeric, booleans as
// 1/0. nullopt for anything else (text, NULL).
std::optional<double> NumericValue(const PGresult* result) {
  if (PQntuples(result) < 1 || PQnfields(result) < 1 || PQgetisnull(result, 0, 0)) {
    return std::nullopt;
  }
  const char* text = PQgetvalue(result, 0, 0);
  const Oid type = PQftype(result, 0);
  constexpr Oid kBoolOid = 16;
  if (type == kBoolOid) return text[0] == 't' ? 1.0 : 0.0;
  if (text[0] == '\0') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0') return std::nullopt;
  return value;
}

class PostgresProbe final : public Probe {
 public:
  PostgresProbe(std::shared_ptr<const PostgresOptions> options, sd_event* event)
      : options_(std::move(options)), event_(event) {}
  ~PostgresProbe() override { Cancel(); }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    start_ = std::chrono::steady_clock::now();
    if (sd_event_add_time_relative(
            event_, &timer_, CLOCK_MONOTONIC,
            std::chrono::duration_cast<std::chrono::microseconds>(options_->timeout).count(), 1000,
            &PostgresProbe::OnTimer, this) < 0) {
      timer_ = nullptr;
      FailSoon("could not arm the timeout timer");
      return;
    }
    if (options_->resolve_host.empty()) {
      Connect({});
      return;
    }
    phase_ = Phase::kResolving;
    if (!resolver_.Start(
            event_, options_->resolve_host,
            [this](const std::vector<std::string>& addresses, const std::string& error) {
              if (error.empty()) {
                Connect(addresses);
              } else {
                Fail(error);
              }
            })) {
      FailSoon("could not start the DNS lookup");
    }
  }

  // `addresses`: the numeric addresses of the dsn's host name, or none to let libpq
  // connect as the dsn says. Failures are delivered from the loop (this may run inside
  // Start()).
  void Connect(const std::vector<std::string>& addresses) {
    // libpq tries "host=h,h hostaddr=a1,a2" in turn, as it would the name's addresses.
    std::string hosts;
    std::string hostaddr;
    for (const std::string& address : addresses) {
      hosts += (hosts.empty() ? "" : ",") + options_->resolve_host;
      hostaddr += (hostaddr.empty() ? "" : ",") + address;
    }
    std::vector<const char*> keywords = {"application_name", "dbname"};
    std::vector<const char*> values = {"rollguard", options_->dsn.c_str()};
    if (!options_->password.empty()) {
      keywords.push_back("password");
      values.push_back(options_->password.c_str());
    }
    if (!hostaddr.empty()) {
      // `host` stays the name: TLS verify-full and error messages use it.
      keywords.push_back("host");
      values.push_back(hosts.c_str());
      keywords.push_back("hostaddr");
      values.push_back(hostaddr.c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
    // expand_dbname = 1: "dbname" carries the whole conninfo; keywords after it override
    // what it sets, keywords before it (application_name) are overridden by it.
    conn_ = PQconnectStartParams(keywords.data(), values.data(), 1);
    if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
      FailSoon(conn_ == nullptr ? "could not start a connection (out of memory?)"
                                : CleanMessage(PQerrorMessage(conn_), options_->password));
      return;
    }
    phase_ = Phase::kConnecting;
    poll_status_ = PGRES_POLLING_WRITING;  // libpq: behave as if it had said "writing" first
    if (!WatchSocket(EPOLLOUT)) FailSoon("could not watch the connection's socket");
  }

  void Cancel() override {
    deferred_.Cancel();
    Close();
    done_ = nullptr;
  }

 private:
  enum class Phase { kIdle, kResolving, kConnecting, kQuerying };

  void FailSoon(std::string error) {
    Close();
    deferred_.Schedule(event_, [this, error = std::move(error)] {
      ProbeResult result;
      result.latency_seconds = Elapsed();
      result.error = error;
      Finish(std::move(result));
    });
  }

  // (Re-)registers the socket with `events`. During the connect phase a new source is made
  // every time: libpq may close its socket and open another one (next address, SSL
  // fallback) that can reuse the same descriptor number, which sd-event would not notice.
  bool WatchSocket(uint32_t events) {
    const int fd = PQsocket(conn_);
    if (fd < 0) return false;
    if (io_ != nullptr && phase_ != Phase::kConnecting && fd == io_fd_) {
      return sd_event_source_set_io_events(io_, events) >= 0;
    }
    io_ = sd_event_source_disable_unref(io_);
    io_fd_ = fd;
    if (sd_event_add_io(event_, &io_, fd, events, &PostgresProbe::OnIo, this) < 0) {
      io_ = nullptr;
      return false;
    }
    return true;
  }

  static int OnIo(sd_event_source* /*source*/, int /*fd*/, uint32_t revents, void* self) {
    auto* probe = static_cast<PostgresProbe*>(self);
    if (probe->phase_ == Phase::kConnecting) {
      probe->ContinueConnect();
    } else if (probe->phase_ == Phase::kQuerying) {
      probe->ContinueQuery(revents);
    }
    return 0;
  }

  static int OnTimer(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
    auto* probe = static_cast<PostgresProbe*>(self);
    const std::string stage = probe->phase_ == Phase::kResolving ? "resolving the host name"
                              : probe->phase_ == Phase::kConnecting
                                  ? "while connecting"
                                  : "waiting for the query's result";
    probe->Fail("timed out after " + FormatDuration(probe->options_->timeout) + " " + stage);
    return 0;
  }

  void ContinueConnect() {
    poll_status_ = PQconnectPoll(conn_);
    switch (poll_status_) {
      case PGRES_POLLING_READING:
        if (!WatchSocket(EPOLLIN)) Fail("could not watch the connection's socket");
        return;
      case PGRES_POLLING_WRITING:
        if (!WatchSocket(EPOLLOUT)) Fail("could not watch the connection's socket");
        return;
      case PGRES_POLLING_OK:
        StartQuery();
        return;
      default:
        Fail(CleanMessage(PQerrorMessage(conn_), options_->password));
        return;
    }
  }

  void StartQuery() {
    phase_ = Phase::kQuerying;
    // Non-blocking mode also keeps PQfinish's Terminate message from ever waiting.
    if (PQsetnonblocking(conn_, 1) != 0 || PQsendQuery(conn_, options_->query.c_str()) != 1) {
      Fail(CleanMessage(PQerrorMessage(conn_), options_->password));
      return;
    }
    Flush();
  }

  // Sends what libpq has buffered; watches for writability only while some is left.
  // False when the run ended (`done` was called: this probe may be gone).
  bool Flush() {
    const int flushed = PQflush(conn_);
    if (flushed < 0) {
      Fail(CleanMessage(PQerrorMessage(conn_), options_->password));
      return false;
    }
    if (!WatchSocket(flushed == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN)) {
      Fail("could not watch the connection's socket");
      return false;
    }
    return true;
  }

  void ContinueQuery(uint32_t revents) {
    if ((revents & EPOLLOUT) != 0 && !Flush()) return;
    if ((revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) == 0) return;
    if (PQconsumeInput(conn_) != 1) {
      Fail(CleanMessage(PQerrorMessage(conn_), options_->password));
      return;
    }
    while (PQisBusy(conn_) == 0) {
      PGresult* result = PQgetResult(conn_);
      if (result == nullptr) {
        Complete();
        return;
      }
      // A query string may hold several statements: the first error fails the run, the
      // first row-bearing result provides the value.
      const ExecStatusType status = PQresultStatus(result);
      if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
          status == PGRES_NONFATAL_ERROR) {
        if (status != PGRES_NONFATAL_ERROR && error_.empty()) {
          error_ =
              "query failed: " + CleanMessage(PQresultErrorMessage(result), options_->password);
        }
      } else if (status == PGRES_TUPLES_OK && !have_rows_) {
        have_rows_ = true;
        value_ = NumericValue(result);
      } else if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
        PQclear(result);
        Fail("expected a query that returns rows, got a COPY");
        return;
      }
      PQclear(result);
    }
  }

  void Complete() {
    ProbeResult result;
    result.latency_seconds = Elapsed();
    if (error_.empty()) {
      result.up = true;
      if (value_) result.fields["value"] = *value_;
    } else {
      result.error = error_;
    }
    Close();
    Finish(std::move(result));
  }

  void Fail(std::string error) {
    ProbeResult result;
    result.latency_seconds = Elapsed();
    result.error = std::move(error);
    Close();
    Finish(std::move(result));
  }

  double Elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  void Finish(ProbeResult result) {
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this probe
  }

  // Abandons the connection whatever its state: closes the socket without waiting.
  void Close() {
    resolver_.Cancel();
    io_ = sd_event_source_disable_unref(io_);
    timer_ = sd_event_source_disable_unref(timer_);
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    phase_ = Phase::kIdle;
    error_.clear();
    have_rows_ = false;
    value_.reset();
  }

  std::shared_ptr<const PostgresOptions> options_;
  sd_event* event_;
  PGconn* conn_ = nullptr;
  Phase phase_ = Phase::kIdle;
  PostgresPollingStatusType poll_status_ = PGRES_POLLING_WRITING;
  sd_event_source* io_ = nullptr;
  int io_fd_ = -1;
  sd_event_source* timer_ = nullptr;
  std::chrono::steady_clock::time_point start_;
  std::string error_;
  bool have_rows_ = false;
  std::optional<double> value_;
  HostResolver resolver_;
  DeferredCall deferred_;
  ProbeDone done_;
};

class PostgresProbeConfig final : public ProbeConfig {
 public:
  PostgresProbeConfig(ProbeSpec spec, std::shared_ptr<const PostgresOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<PostgresProbe>(options_, context.event());
  }

 private:
  std::shared_ptr<const PostgresOptions> options_;
};

}  // namespace

std::shared_ptr<const ProbeConfig> ParsePostgresProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<PostgresOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* entry = keys.Required("dsn")) {
    if (std::optional<KeyValue> dsn = keys.Resolve(*entry)) {
      char* error = nullptr;
      PQconninfoOption* parsed = PQconninfoParse(dsn->text.c_str(), &error);
      if (parsed == nullptr) {
        // libpq's message names the offending piece; the whole dsn is never quoted, as a
        // malformed one may hold a password.
        const std::string why = error != nullptr && !dsn->secret
                                    ? CleanMessage(error, "")
                                    : std::string("not a valid conninfo string");
        keys.ErrorAt(*entry,
                     "expected a libpq conninfo string (\"host=... dbname=...\") or a "
                     "postgresql:// URI, got one libpq rejects: " +
                         why);
      } else {
        bool has_password = false;
        std::string host;
        bool has_hostaddr = false;
        for (const PQconninfoOption* option = parsed; option->keyword != nullptr; ++option) {
          if (option->val == nullptr) continue;
          const std::string_view keyword = option->keyword;
          if (keyword == "password") has_password = true;
          if (keyword == "host") host = option->val;
          if (keyword == "hostaddr" && option->val[0] != '\0') has_hostaddr = true;
        }
        // Not: absent (PGHOST or the default socket), socket folders, multi-host lists
        // (libpq tries each in turn), IP literals.
        if (!has_hostaddr && !host.empty() && host[0] != '/' && host[0] != '@' &&
            host.find(',') == std::string::npos && !HostResolver::IsNumeric(host)) {
          options->resolve_host = host;
        }
        if (has_password) {
          keys.ErrorAt(*entry,
                       "expected a dsn without a password (put it in password_file, so it is "
                       "never logged), got a dsn that sets one");
        }
        options->dsn = dsn->text;
      }
      PQconninfoFree(parsed);
      PQfreemem(error);
    }
  }
  if (std::optional<std::string> password = keys.Secret("password_file")) {
    options->password = *password;
  }
  if (const IniEntry* entry = keys.Single("query")) {
    if (Trim(entry->value).empty()) {
      keys.ErrorAt(*entry, "expected an SQL query, got an empty value");
    } else {
      options->query = entry->value;
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<PostgresProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
