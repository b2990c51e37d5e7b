// Targets that misbehave: each costs at most the probe's timeout (or the body cap), and a
// slow one never delays the others sharing the loop.
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "probes/http_probe.h"
#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

TimedResult RunHttp(const std::string& url, const std::string& timeout) {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe api]\ntype = http\nurl = " + url + "\ntimeout = " + timeout + "\n")
                   ->Instantiate(context);
  return RunOnce(loop, *probe);
}

}  // namespace

TEST_CASE("http probe: a target that accepts and never answers costs the timeout", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  const TimedResult run = RunHttp(server.Url("/"), "1s");
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "timed out after 1s waiting for the response");
  CHECK(run.seconds >= 0.9);
  CHECK(run.seconds < 2.0);
}

TEST_CASE("http probe: a target that drips a byte a second costs the timeout", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    while (connection.Write("x") && connection.Sleep(std::chrono::seconds(1))) {
    }
  });
  const TimedResult run = RunHttp(server.Url("/"), "2s");
  CHECK_FALSE(run.result.up);
  CHECK_THAT(run.result.error, Catch::StartsWith("timed out after 2s reading the response ("));
  CHECK(run.seconds >= 1.9);
  CHECK(run.seconds < 3.0);
}

TEST_CASE("http probe: a drip in the headers is bounded too", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("HTTP/1.1 200 OK\r\n");
    while (connection.Write("X-Slow: y\r\n") && connection.Sleep(std::chrono::milliseconds(300))) {
    }
  });
  const TimedResult run = RunHttp(server.Url("/"), "1s");
  CHECK_FALSE(run.result.up);
  CHECK_THAT(run.result.error, Catch::StartsWith("timed out after 1s"));
  CHECK(run.seconds < 2.0);
}

TEST_CASE("http probe: an endless body stops at the 1 MiB cap, quickly", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    // Chunked, so the size is not known up front: the cap has to stop the read itself.
    connection.Write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = "10000\r\n" + std::string(0x10000, 'a') + "\r\n";
    for (int i = 0; i < 100 * 16 && connection.Write(chunk); ++i) {
    }
  });
  const TimedResult run = RunHttp(server.Url("/"), "10s");
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "response body exceeds the 1 MiB cap");
  CHECK(Number(run.result, "status") == 200);
  CHECK(run.seconds < 2.0);
}

TEST_CASE("http probe: a body announced above the cap is refused before reading it", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
    connection.Hang();
  });
  const TimedResult run = RunHttp(server.Url("/"), "10s");
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "response body exceeds the 1 MiB cap");
  CHECK(run.seconds < 1.0);
}

TEST_CASE("http probe: a body of exactly the cap is read whole", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(200, std::string(kHttpMaxBodyBytes, 'b')));
  });
  const TimedResult run = RunHttp(server.Url("/"), "10s");
  CHECK(run.result.up);
  CHECK(Number(run.result, "body_bytes") == static_cast<double>(kHttpMaxBodyBytes));
}

TEST_CASE("http probes share the loop: a slow target does not delay fast ones", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer slow([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  TestServer fast(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  EventLoop loop;
  ProbeContext context(loop.get());
  constexpr int kSlow = 5;
  constexpr int kFast = 20;
  std::vector<std::unique_ptr<Probe>> probes;
  std::vector<std::optional<TimedResult>> results(kSlow + kFast);
  for (int i = 0; i < kSlow + kFast; ++i) {
    const bool is_slow = i < kSlow;
    const std::string url = is_slow ? slow.Url("/slow") : fast.Url("/fast");
    probes.push_back(MustParse("[probe p" + std::to_string(i) + "]\ntype = http\nurl = " + url +
                               "\ntimeout = 3s\n")
                         ->Instantiate(context));
  }
  const auto start = std::chrono::steady_clock::now();
  // The slow ones go first, so a loop that served probes in turn would show it.
  for (int i = 0; i < kSlow + kFast; ++i) {
    probes[i]->Start([&results, i, start](ProbeResult result) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      results[i] = TimedResult{std::move(result), seconds};
    });
  }
  REQUIRE(loop.RunUntil([&] {
    for (const auto& result : results) {
      if (!result) return false;
    }
    return true;
  }));
  double slowest_fast = 0;
  for (int i = kSlow; i < kSlow + kFast; ++i) {
    CHECK(results[i]->result.up);
    slowest_fast = std::max(slowest_fast, results[i]->seconds);
  }
  for (int i = 0; i < kSlow; ++i) {
    CHECK_FALSE(results[i]->result.up);
    CHECK(results[i]->seconds >= 2.9);
    CHECK(results[i]->seconds < 4.0);
  }
  INFO("slowest fast probe finished after " << slowest_fast << "s");
  CHECK(slowest_fast < 1.0);
}
