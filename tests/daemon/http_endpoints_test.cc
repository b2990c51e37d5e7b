#include "daemon/http_endpoints.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon/metrics.h"
#include "daemon/status_board.h"

namespace rollguard {
namespace {

using std::chrono::milliseconds;

// A TCP connection to the server under test, on loopback.
int Connect(int port, bool ipv6 = false) {
  const int fd = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  int rc = -1;
  if (ipv6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(static_cast<uint16_t>(port));
    address.sin6_addr = in6addr_loopback;
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  }
  REQUIRE(rc == 0);
  return fd;
}

// Reads until the server closes the connection or `timeout` passes.
std::string ReadAll(int fd, milliseconds timeout = milliseconds(5000)) {
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) break;
    char buffer[4096];
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

struct Response {
  int status = 0;
  std::string headers;
  std::string body;
};

Response Request(int port, const std::string& method, const std::string& path, bool ipv6 = false) {
  const int fd = Connect(port, ipv6);
  const std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  const std::string raw = ReadAll(fd);
  ::close(fd);
  Response response;
  const size_t end = raw.find("\r\n\r\n");
  INFO(raw);
  REQUIRE(end != std::string::npos);
  REQUIRE(raw.compare(0, 9, "HTTP/1.1 ") == 0);
  response.status = std::stoi(raw.substr(9, 3));
  response.headers = raw.substr(0, end);
  response.body = raw.substr(end + 4);
  return response;
}

ListenAddress Loopback(int port = 0) { return ListenAddress{"127.0.0.1", false, port}; }

TEST_CASE("listen address: off, IPv4 and bracketed IPv6", "[http]") {
  auto off = ParseListenAddress("off");
  REQUIRE(off);
  CHECK_FALSE(off->has_value());

  auto v4 = ParseListenAddress("127.0.0.1:9847");
  REQUIRE(v4);
  REQUIRE(v4->has_value());
  CHECK((*v4)->host == "127.0.0.1");
  CHECK((*v4)->port == 9847);
  CHECK_FALSE((*v4)->ipv6);
  CHECK((*v4)->ToString() == "127.0.0.1:9847");

  auto v6 = ParseListenAddress("[::1]:9847");
  REQUIRE(v6);
  REQUIRE(v6->has_value());
  CHECK((*v6)->host == "::1");
  CHECK((*v6)->ipv6);
  CHECK((*v6)->ToString() == "[::1]:9847");

  for (const char* bad : {"", "9847", "localhost:9847", "127.0.0.1", "127.0.0.1:", "::1:9847",
                          "[::1]9847", "[::1", "127.0.0.1:70000", "127.0.0.1:http", "1.2.3:80"}) {
    INFO(bad);
    auto parsed = ParseListenAddress(bad);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().message.find("expected") != std::string::npos);
  }
}

TEST_CASE("http endpoints serve metrics, health and status, and refuse the rest", "[http]") {
  Metrics metrics;
  StatusBoard status;
  status.SetPausedUntil(FromMillis(60'000));
  status.Want();  // published before the server starts: every request is served at once
  REQUIRE_FALSE(status.MaybePublish(FromMillis(0)).has_value());
  auto http = HttpEndpoints::Start(Loopback(), metrics, status);
  REQUIRE(http);
  const int port = (*http)->port();
  REQUIRE(port > 0);

  const Response scrape = Request(port, "GET", "/metrics");
  CHECK(scrape.status == 200);
  CHECK(scrape.headers.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(scrape.body == metrics.Exposition());
  CHECK(scrape.body.find("rollguard_build_info{version=") != std::string::npos);

  const Response health = Request(port, "GET", "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");

  const Response document = Request(port, "GET", "/api/v1/status?pretty=1");
  CHECK(document.status == 200);
  CHECK(document.headers.find("Content-Type: application/json") != std::string::npos);
  CHECK(document.body == *status.Published());
  CHECK(document.body.find("\"paused_until\":\"1970-01-01T00:01:00.000Z\"") != std::string::npos);

  CHECK(Request(port, "GET", "/").status == 404);
  CHECK(Request(port, "GET", "/metrics/x").status == 404);
  CHECK(Request(port, "GET", "/api/v1/statusx").status == 404);
  const Response post = Request(port, "POST", "/api/v1/status");
  CHECK(post.status == 405);
  CHECK(post.headers.find("Allow: GET") != std::string::npos);
  CHECK(Request(port, "DELETE", "/metrics").status == 405);
}

TEST_CASE("http endpoints: healthz fails once the loop stops beating", "[http]") {
  Metrics metrics;
  StatusBoard status;
  HttpOptions options;
  options.heartbeat_max_age = milliseconds(200);
  auto http = HttpEndpoints::Start(Loopback(), metrics, status, options);
  REQUIRE(http);
  const int port = (*http)->port();
  CHECK(Request(port, "GET", "/healthz").status == 200);
  std::this_thread::sleep_for(milliseconds(400));
  const Response stalled = Request(port, "GET", "/healthz");
  CHECK(stalled.status == 503);
  CHECK(stalled.body.find("stalled") != std::string::npos);
  (*http)->Heartbeat();
  CHECK(Request(port, "GET", "/healthz").status == 200);
}

TEST_CASE("http endpoints: a port in use is an error naming the address", "[http]") {
  Metrics metrics;
  StatusBoard status;
  auto first = HttpEndpoints::Start(Loopback(), metrics, status);
  REQUIRE(first);
  const int port = (*first)->port();
  auto second = HttpEndpoints::Start(Loopback(port), metrics, status);
  REQUIRE_FALSE(second);
  CHECK(second.error().message.find("cannot listen on 127.0.0.1:" + std::to_string(port)) == 0);
  // The first one keeps serving.
  CHECK(Request(port, "GET", "/healthz").status == 200);
}

TEST_CASE("http endpoints: silent and oversized clients neither stall nor crash the server",
          "[http]") {
  Metrics metrics;
  StatusBoard status;
  HttpOptions options;
  options.threads = 2;
  options.request_timeout = milliseconds(500);
  auto http = HttpEndpoints::Start(Loopback(), metrics, status, options);
  REQUIRE(http);
  const int port = (*http)->port();

  // Two clients that connect and say nothing occupy both workers...
  const int silent1 = Connect(port);
  const int silent2 = Connect(port);
  const auto start = std::chrono::steady_clock::now();
  // ...yet a scrape gets through once their request timeout has passed.
  CHECK(Request(port, "GET", "/healthz").status == 200);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(4));
  // The server hung up on them.
  CHECK(ReadAll(silent1, milliseconds(3000)).find("200 OK") == std::string::npos);
  ::close(silent1);
  ::close(silent2);

  // Headers larger than the limit are refused, not buffered without end.
  const int big = Connect(port);
  const std::string request =
      "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
  (void)::send(big, request.data(), request.size(), MSG_NOSIGNAL);
  const std::string answer = ReadAll(big, milliseconds(3000));
  ::close(big);
  CHECK(answer.find("200 OK") == std::string::npos);
  CHECK(Request(port, "GET", "/metrics").status == 200);
}

TEST_CASE("http endpoints on IPv6 loopback serve, or say civetweb cannot", "[http]") {
  Metrics metrics;
  StatusBoard status;
  auto http = HttpEndpoints::Start(ListenAddress{"::1", true, 0}, metrics, status);
  if (!http) {
    // Debian 12's libcivetweb is built without IPv6: the start fails, saying why.
    CHECK(http.error().message ==
          "cannot listen on [::1]:0: this build of civetweb has no IPv6 support");
    WARN("IPv6 listen not tested: " + http.error().message);
    return;
  }
  CHECK(Request((*http)->port(), "GET", "/healthz", /*ipv6=*/true).status == 200);
}

TEST_CASE("http endpoints: the first status request waits for the loop to publish", "[http]") {
  Metrics metrics;
  StatusBoard status;
  status.SetPausedUntil(FromMillis(60'000));
  std::atomic<int> wakes{0};
  status.SetWake([&wakes] { ++wakes; });
  auto http = HttpEndpoints::Start(Loopback(), metrics, status);
  REQUIRE(http);
  const int port = (*http)->port();
  REQUIRE(status.Published() == nullptr);

  // The loop, on its own thread: it publishes only once a request made the document wanted.
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    for (int64_t ms = 1000; !stop; ++ms) {
      status.MaybePublish(FromMillis(ms));
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  const Response first = Request(port, "GET", "/api/v1/status");
  const Response second = Request(port, "GET", "/api/v1/status");
  stop = true;
  loop.join();
  CHECK(first.status == 200);
  CHECK(first.headers.find("Content-Type: application/json") != std::string::npos);
  CHECK(first.body == status.Json());
  CHECK(nlohmann::json::parse(first.body)["paused_until"] == "1970-01-01T00:01:00.000Z");
  CHECK(second.body == first.body);
  CHECK(wakes == 1);  // the second found the publication: no wake-up, no wait
}

TEST_CASE("http endpoints: a status request that nothing publishes gets a 503 in JSON", "[http]") {
  Metrics metrics;
  StatusBoard status;
  HttpOptions options;
  options.status_wait = milliseconds(200);
  auto http = HttpEndpoints::Start(Loopback(), metrics, status, options);
  REQUIRE(http);
  const auto start = std::chrono::steady_clock::now();
  const Response refused = Request((*http)->port(), "GET", "/api/v1/status");
  CHECK(std::chrono::steady_clock::now() - start >= milliseconds(200));
  CHECK(refused.status == 503);
  CHECK(refused.headers.find("Content-Type: application/json") != std::string::npos);
  CHECK(refused.headers.find("Retry-After: 1") != std::string::npos);
  const nlohmann::json body = nlohmann::json::parse(refused.body);
  CHECK(body["error"].get<std::string>().find("not published within 200ms") != std::string::npos);
}

}  // namespace
}  // namespace rollguard
