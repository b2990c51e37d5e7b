#include "probes/tcp_probe.h"

#include <curl/curl.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "common/strings.h"
#include "probes/curl_multi.h"
#include "probes/deferred_call.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

bool IsIpv6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
}

struct TcpOptions {
  Duration timeout;
  TcpAddress address;
  std::string url;  // how curl is told where to connect
};

class TcpProbe final : public Probe {
 public:
  TcpProbe(std::shared_ptr<const TcpOptions> options, CurlMulti& curl)
      : options_(std::move(options)), curl_(curl) {}
  ~TcpProbe() override { Cancel(); }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    easy_ = curl_easy_init();
    if (easy_ == nullptr || !Configure() ||
        !curl_.Add(easy_, [this](int code) { OnDone(static_cast<CURLcode>(code)); })) {
      Cleanup();
      deferred_.Schedule(curl_.event(), [this] {
        ProbeResult result;
        result.error = "could not start the connection attempt (out of memory?)";
        Finish(std::move(result));
      });
    }
  }

  void Cancel() override {
    deferred_.Cancel();
    if (easy_ != nullptr) curl_.Remove(easy_);
    Cleanup();
    done_ = nullptr;
  }

 private:
  bool Configure() {
    bool ok = true;
    auto set = [&ok](CURLcode code) { ok = ok && code == CURLE_OK; };
    set(curl_easy_setopt(easy_, CURLOPT_URL, options_->url.c_str()));
    set(curl_easy_setopt(easy_, CURLOPT_PROTOCOLS_STR, "http"));
    set(curl_easy_setopt(easy_, CURLOPT_CONNECT_ONLY, 1L));
    // Every run proves a new connection can be made; a pooled one proves nothing.
    set(curl_easy_setopt(easy_, CURLOPT_FRESH_CONNECT, 1L));
    set(curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, 1L));
    set(curl_easy_setopt(easy_, CURLOPT_PROXY, ""));
    set(curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L));
    set(curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(options_->timeout.count())));
    set(curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(options_->timeout.count())));
    set(curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_));
    return ok;
  }

  void OnDone(CURLcode code) {
    ProbeResult result;
    curl_off_t micros = 0;
    curl_easy_getinfo(easy_, CURLINFO_TOTAL_TIME_T, &micros);
    result.latency_seconds = static_cast<double>(micros) / 1e6;
    if (code == CURLE_OK) {
      result.up = true;
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
      result.error = "timed out after " + FormatDuration(options_->timeout) + " while connecting";
    } else if (code == CURLE_COULDNT_CONNECT) {
      long os_errno = 0;  // NOLINT(runtime/int): curl's type
      curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
      result.error =
          os_errno == ECONNREFUSED
              ? "connection refused"
              : "could not connect: " + std::string(error_[0] ? error_ : curl_easy_strerror(code));
    } else if (code == CURLE_COULDNT_RESOLVE_HOST) {
      result.error =
          "DNS lookup failed: " + std::string(error_[0] ? error_ : curl_easy_strerror(code));
    } else {
      result.error = error_[0] ? error_ : curl_easy_strerror(code);
    }
    // Closes the socket: nothing is ever sent.
    Cleanup();
    Finish(std::move(result));
  }

  void Finish(ProbeResult result) {
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this probe
  }

  void Cleanup() {
    if (easy_ != nullptr) curl_easy_cleanup(easy_);
    easy_ = nullptr;
    error_[0] = '\0';
  }

  std::shared_ptr<const TcpOptions> options_;
  CurlMulti& curl_;
  CURL* easy_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
  DeferredCall deferred_;
  ProbeDone done_;
};

class TcpProbeConfig final : public ProbeConfig {
 public:
  TcpProbeConfig(ProbeSpec spec, std::shared_ptr<const TcpOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<TcpProbe>(options_, context.curl());
  }

 private:
  std::shared_ptr<const TcpOptions> options_;
};

}  // namespace

std::optional<TcpAddress> ParseTcpAddress(std::string_view text) {
  TcpAddress address;
  std::string_view port;
  if (StartsWith(text, "[")) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    address.host = std::string(text.substr(1, close - 1));
    address.ipv6 = true;
    port = text.substr(close + 2);
    if (address.host.empty()) return std::nullopt;
    for (char c : address.host) {
      if (!IsIpv6Char(c)) return std::nullopt;
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    address.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    for (char c : address.host) {
      if (!IsHostChar(c)) return std::nullopt;
    }
  }
  int number = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || number < 1 ||
      number > 65535) {
    return std::nullopt;
  }
  address.port = number;
  return address;
}

std::shared_ptr<const ProbeConfig> ParseTcpProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<TcpOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* entry = keys.Required("address")) {
    if (auto address = ParseTcpAddress(entry->value)) {
      options->address = *address;
      const std::string host = address->ipv6 ? "[" + address->host + "]" : address->host;
      options->url = "http://" + host + ":" + std::to_string(address->port) + "/";
    } else {
      keys.ErrorAt(*entry, "expected host:port or [ipv6]:port with a port from 1 to 65535, got " +
                               Quoted(entry->value));
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<TcpProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
