// The http probes that take PlainHttp's path (an http:// url naming an address): how they
// read answers libcurl would read for them, and what they do with kept-alive connections
// that servers close. Real servers on 127.0.0.1, on a real sd-event loop.
#include "probes/plain_http.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "probes/http_probe.h"
#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

std::unique_ptr<Probe> HttpProbeOf(ProbeContext& context, const std::string& url,
                                   const std::string& extra = "") {
  return MustParse("[probe api]\ntype = http\nurl = " + url + "\ntimeout = 2s\n" + extra)
      ->Instantiate(context);
}

ProbeResult RunPlain(const std::string& url, const std::string& extra = "") {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, url, extra);
  ProbeResult result = RunOnce(loop, *probe).result;
  CHECK(context.plain_http().new_connections() >= 1);  // it did take this path
  return result;
}

}  // namespace

TEST_CASE("plain http: a chunked body is read whole, JSON fields included", "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "7\r\n{\"db\": \r\n8\r\n\"up\", \"n\r\n7\r\n\": 42}\n\r\n0\r\n\r\n");
  });
  const ProbeResult result = RunPlain(server.Url("/"));
  CHECK(result.up);
  CHECK(Number(result, "body_bytes") == 22);
  CHECK(std::get<std::string>(result.fields.at("json.db")) == "up");
  CHECK(Number(result, "json.n") == 42);
}

TEST_CASE("plain http: a body without a length ends where the server closes", "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("HTTP/1.0 200 OK\r\n\r\nstatus: fine");
    connection.Close();
  });
  const ProbeResult result = RunPlain(server.Url("/"), "expect_body = fine$\n");
  CHECK(result.up);
  CHECK(Number(result, "body_bytes") == 12);
}

TEST_CASE("plain http: an interim 100 Continue is skipped for the answer after it",
          "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("HTTP/1.1 100 Continue\r\n\r\n" + Response(503, "busy"));
  });
  const ProbeResult result = RunPlain(server.Url("/"));
  CHECK_FALSE(result.up);
  CHECK(Number(result, "status") == 503);
  CHECK(result.error == "status 503 not in 200-299");
}

TEST_CASE("plain http: HEAD reads no body, whatever Content-Length says", "[http][plain]") {
  TestServer server([](const HttpRequest& request, Connection& connection) {
    CHECK(request.method == "HEAD");
    connection.Write("HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n");
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, server.Url("/"), "method = HEAD\n");
  for (int i = 0; i < 3; ++i) {
    const ProbeResult result = RunOnce(loop, *probe).result;
    CHECK(result.up);
    CHECK(Number(result, "body_bytes") == 0);
  }
  CHECK(server.connections() == 1);  // the connection stayed usable
}

TEST_CASE("plain http: sends the request libcurl would, the probe's headers included",
          "[http][plain]") {
  TempDir dir;
  const std::string token = dir.Write("token", "s3cret\n");
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  const ProbeResult result =
      RunPlain(server.Url("/status?verbose=1&x=%20"),
               "header = X-Team: payments\nheader = Accept: application/json\n"
               "header = X-Empty:\nbearer_token_file = " +
                   token + "\n");
  CHECK(result.up);
  const std::vector<HttpRequest> requests = server.requests();
  REQUIRE(requests.size() == 1);
  const HttpRequest& request = requests[0];
  CHECK(request.method == "GET");
  CHECK(request.target == "/status?verbose=1&x=%20");
  CHECK(request.headers.at("host") == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(request.headers.at("user-agent") == "rollguard/" ROLLGUARD_VERSION);
  CHECK(request.headers.at("accept") == "application/json");  // the probe's, not */*
  CHECK(request.headers.at("x-team") == "payments");
  CHECK(request.headers.at("x-empty").empty());
  CHECK(request.headers.at("authorization") == "Bearer s3cret");
}

TEST_CASE("plain http: runs share one kept-alive connection", "[http][plain]") {
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto first = HttpProbeOf(context, server.Url("/a"));
  auto second = HttpProbeOf(context, server.Url("/b"));
  for (int i = 0; i < 5; ++i) {
    const ProbeResult result = RunOnce(loop, i % 2 == 0 ? *first : *second).result;
    CHECK(result.up);
    // phase.connect only for the run that connected.
    CHECK(result.fields.count("phase.connect") == (i == 0 ? 1u : 0u));
    CHECK(result.fields.count("phase.first_byte") == 1);
  }
  CHECK(server.connections() == 1);
  CHECK(context.plain_http().open_connections() == 1);
}

TEST_CASE("plain http: a kept-alive connection the server closes is noticed and replaced",
          "[http][plain]") {
  // Answers, then closes the connection a moment later, as a keep-alive timeout does.
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(200, "ok"));
    connection.Sleep(std::chrono::milliseconds(50));
    connection.Close();
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, server.Url("/"));
  CHECK(RunOnce(loop, *probe).result.up);
  REQUIRE(loop.RunUntil([&] { return context.plain_http().open_connections() == 0; }));
  CHECK(RunOnce(loop, *probe).result.up);
  CHECK(server.connections() == 2);
}

TEST_CASE("plain http: a request the server drops on a reused connection is sent again once",
          "[http][plain]") {
  // Every connection answers its first request and closes on its second without a word:
  // the race of a request with a keep-alive timeout.
  TestServer server([](const HttpRequest&, Connection& connection) {
    thread_local const Connection* last = nullptr;
    if (last == &connection) {
      connection.Close();
      return;
    }
    last = &connection;
    connection.Write(Response(200, "ok"));
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, server.Url("/"));
  for (int i = 0; i < 3; ++i) {
    const ProbeResult result = RunOnce(loop, *probe).result;
    CHECK(result.up);
    CHECK(result.error.empty());
  }
  CHECK(server.requests().size() == 5);  // 1, then 2 for each run on a reused connection
  CHECK(server.connections() == 3);
}

TEST_CASE("plain http: a server that closes without answering is reported once, not retried",
          "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Close(); });
  const ProbeResult result = RunPlain(server.Url("/"));
  CHECK_FALSE(result.up);
  CHECK(result.error == "the server closed the connection without answering");
  CHECK(server.requests().size() == 1);  // a new connection is not retried
}

TEST_CASE("plain http: an answer that is not HTTP says so", "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write("SSH-2.0-OpenSSH_9.2p1\r\n");
  });
  const ProbeResult result = RunPlain(server.Url("/"));
  CHECK_FALSE(result.up);
  CHECK_THAT(result.error, Catch::StartsWith("malformed HTTP response: "));
  CHECK(result.fields.count("status") == 0);
}

TEST_CASE("plain http: bytes after the answer keep the connection from being reused",
          "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(200, "ok") + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad");
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, server.Url("/"));
  CHECK(RunOnce(loop, *probe).result.up);
  CHECK(RunOnce(loop, *probe).result.up);
  CHECK(server.connections() == 2);
}

TEST_CASE("plain http: a burst to one address opens at most 64 connections, all answered",
          "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    connection.Write(Response(200, "ok"));
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  std::vector<std::unique_ptr<Probe>> probes;
  int answered = 0;
  for (int i = 0; i < 200; ++i) {
    probes.push_back(HttpProbeOf(context, server.Url("/" + std::to_string(i))));
    probes.back()->Start([&](ProbeResult result) {
      CHECK(result.up);
      ++answered;
    });
  }
  REQUIRE(loop.RunUntil([&] { return answered == 200; }));
  CHECK(server.connections() <= static_cast<int>(PlainHttp::kMaxOriginConnections));
  CHECK(context.plain_http().open_connections() <= PlainHttp::kMaxOriginConnections);
}

TEST_CASE("plain http: a cancelled run reports nothing and leaves no connection behind",
          "[http][plain]") {
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = HttpProbeOf(context, server.Url("/"));
  bool reported = false;
  probe->Start([&](ProbeResult) { reported = true; });
  REQUIRE(loop.RunUntil([&] { return server.requests().size() == 1; }));
  probe->Cancel();
  CHECK(context.plain_http().runs() == 0);
  CHECK(context.plain_http().open_connections() == 0);  // mid-answer: closed
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK_FALSE(reported);
}

TEST_CASE("plain http: only an http url naming an address takes this path", "[http][plain]") {
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  const std::string port = std::to_string(server.port());
  struct Case {
    std::string url;
    std::string extra;
    bool plain;
  };
  const std::vector<Case> cases = {
      {"http://127.0.0.1:" + port + "/", "", true},
      {"http://localhost:" + port + "/", "", false},
      {"http://127.0.0.1:" + port + "/", "method = HEAD\n", true},
      {"http://127.0.0.1:" + port + "/", "method = POST\n", false},
      {"http://127.0.0.1:" + port + "/", "body = x\nmethod = PUT\n", false},
      {"http://127.0.0.1:" + port + "/", "follow_redirects = true\n", false},
      {"http://user:pw@127.0.0.1:" + port + "/", "", false},
  };
  for (const Case& c : cases) {
    INFO(c.url << " " << c.extra);
    EventLoop loop;
    ProbeContext context(loop.get());
    auto probe = HttpProbeOf(context, c.url, c.extra);
    CHECK(RunOnce(loop, *probe).result.up);
    CHECK((context.plain_http().new_connections() == 1) == c.plain);
  }
}
