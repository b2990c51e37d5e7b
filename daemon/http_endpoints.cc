#include "daemon/http_endpoints.h"

#include <arpa/inet.h>
#include <civetweb.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "daemon/metrics.h"
#include "daemon/status_board.h"

namespace rollguard {
namespace {

constexpr char kListenExpected[] =
    "expected \"off\" or host:port with a numeric IPv4 address or a bracketed IPv6 "
    "address (127.0.0.1:9847, [::1]:9847)";

// civetweb wants mg_init_library() once before the first server and mg_exit_library()
// after the last.
std::mutex library_mutex;
int library_users = 0;

void AcquireLibrary() {
  std::lock_guard<std::mutex> lock(library_mutex);
  if (library_users++ == 0) mg_init_library(0);
}

void ReleaseLibrary() {
  std::lock_guard<std::mutex> lock(library_mutex);
  if (--library_users == 0) mg_exit_library();
}

// civetweb would print to stderr; the daemon reports its own errors.
int SilenceLog(const mg_connection* /*connection*/, const char* /*message*/) { return 1; }

void Reply(mg_connection* connection, int status, std::string_view reason,
           std::string_view content_type, std::string_view body,
           std::string_view extra_headers = "") {
  mg_printf(connection,
            "HTTP/1.1 %d %.*s\r\n"
            "Content-Type: %.*s\r\n"
            "Content-Length: %zu\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n"
            "%.*s\r\n",
            status, static_cast<int>(reason.size()), reason.data(),
            static_cast<int>(content_type.size()), content_type.data(), body.size(),
            static_cast<int>(extra_headers.size()), extra_headers.data());
  mg_write(connection, body.data(), body.size());
}

}  // namespace

std::string ListenAddress::ToString() const {
  const std::string port_text = std::to_string(port);
  return ipv6 ? "[" + host + "]:" + port_text : host + ":" + port_text;
}

Result<std::optional<ListenAddress>> ParseListenAddress(std::string_view text) {
  if (text == "off") return std::optional<ListenAddress>();
  auto fail = [&]() {
    return Fail(std::string(kListenExpected) + ", got \"" + std::string(text) + "\"");
  };
  ListenAddress address;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail();
    }
    address.host = std::string(text.substr(1, close - 1));
    address.ipv6 = true;
    port_text = text.substr(close + 2);
    in6_addr parsed{};
    if (inet_pton(AF_INET6, address.host.c_str(), &parsed) != 1) return fail();
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail();
    address.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    in_addr parsed{};
    if (inet_pton(AF_INET, address.host.c_str(), &parsed) != 1) return fail();
  }
  int port = -1;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535) {
    return Fail(std::string(kListenExpected) + ", got \"" + std::string(text) +
                "\": the port must be a number from 0 to 65535");
  }
  address.port = port;
  return std::optional<ListenAddress>(std::move(address));
}

HttpEndpoints::HttpEndpoints(ListenAddress address, const Metrics& metrics, StatusBoard& status,
                             const HttpOptions& options)
    : address_(std::move(address)),
      metrics_(metrics),
      status_(status),
      options_(options),
      heartbeat_ms_(SteadyNowMs()) {}

Result<std::unique_ptr<HttpEndpoints>> HttpEndpoints::Start(const ListenAddress& address,
                                                            const Metrics& metrics,
                                                            StatusBoard& status,
                                                            const HttpOptions& options) {
  std::unique_ptr<HttpEndpoints> endpoints(new HttpEndpoints(address, metrics, status, options));
  AcquireLibrary();
  if (address.ipv6 && mg_check_feature(8) == 0) {
    ReleaseLibrary();
    return Fail("cannot listen on " + address.ToString() +
                ": this build of civetweb has no IPv6 support");
  }

  const std::string ports = address.ToString();
  const std::string threads = std::to_string(options.threads);
  const std::string timeout = std::to_string(options.request_timeout.count());
  const std::string max_request = std::to_string(options.max_request_bytes);
  const char* settings[] = {
      "listening_ports",
      ports.c_str(),
      "num_threads",
      threads.c_str(),
      // Accepted connections waiting for a worker; beyond that the kernel's backlog.
      "connection_queue",
      "16",
      "listen_backlog",
      "16",
      "request_timeout_ms",
      timeout.c_str(),
      "max_request_size",
      max_request.c_str(),
      "enable_keep_alive",
      "no",
      "enable_directory_listing",
      "no",
      nullptr,
  };
  mg_callbacks callbacks{};
  callbacks.log_message = &SilenceLog;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = endpoints.get();
  init.configuration_options = settings;
  char error_text[256] = {};
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  endpoints->context_ = mg_start2(&init, &error);
  if (endpoints->context_ == nullptr) {
    ReleaseLibrary();
    std::string why = error_text[0] != '\0' ? std::string(error_text) : "civetweb did not start";
    return Fail("cannot listen on " + address.ToString() + ": " + why);
  }
  // One handler for every path, so unknown paths and methods get our answers.
  mg_set_request_handler(endpoints->context_, "**", &HttpEndpoints::Handle, endpoints.get());

  mg_server_port bound{};
  if (mg_get_server_ports(endpoints->context_, 1, &bound) == 1) endpoints->port_ = bound.port;
  return endpoints;
}

HttpEndpoints::~HttpEndpoints() {
  if (context_ != nullptr) {
    mg_stop(context_);
    ReleaseLibrary();
  }
}

int64_t HttpEndpoints::SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void HttpEndpoints::Heartbeat() { heartbeat_ms_.store(SteadyNowMs(), std::memory_order_relaxed); }

int HttpEndpoints::Handle(mg_connection* connection, void* self) {
  auto& endpoints = *static_cast<HttpEndpoints*>(self);
  const mg_request_info* request = mg_get_request_info(connection);
  const std::string_view method = request->request_method ? request->request_method : "";
  const std::string_view path = request->local_uri ? request->local_uri : "";
  constexpr std::string_view kText = "text/plain; charset=utf-8";

  const bool known = path == "/metrics" || path == "/healthz" || path == "/api/v1/status";
  if (!known) {
    Reply(connection, 404, "Not Found", kText,
          "not found: GET /metrics, /healthz, /api/v1/status\n");
    return 404;
  }
  if (method != "GET") {
    Reply(connection, 405, "Method Not Allowed", kText, "only GET is allowed\n", "Allow: GET\r\n");
    return 405;
  }
  try {
    if (path == "/metrics") {
      Reply(connection, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
            endpoints.metrics_.Exposition());
      return 200;
    }
    if (path == "/healthz") {
      const int64_t age_ms =
          SteadyNowMs() - endpoints.heartbeat_ms_.load(std::memory_order_relaxed);
      if (age_ms > endpoints.options_.heartbeat_max_age.count()) {
        Reply(connection, 503, "Service Unavailable", kText,
              "event loop stalled: last heartbeat " + std::to_string(age_ms / 1000) + "s ago\n");
        return 503;
      }
      Reply(connection, 200, "OK", kText, "ok\n");
      return 200;
    }
    const std::shared_ptr<const std::string> document =
        endpoints.status_.Request(endpoints.options_.status_wait);
    if (document == nullptr) {
      Reply(connection, 503, "Service Unavailable", "application/json",
            "{\"error\":\"the status document was not published within " +
                FormatDuration(endpoints.options_.status_wait) + "; try again\"}",
            "Retry-After: 1\r\n");
      return 503;
    }
    Reply(connection, 200, "OK", "application/json", *document);
    return 200;
  } catch (const std::exception& e) {
    Reply(connection, 500, "Internal Server Error", kText, std::string(e.what()) + "\n");
    return 500;
  }
}

}  // namespace rollguard
