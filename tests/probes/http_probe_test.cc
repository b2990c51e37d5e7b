// The http probe against real servers on 127.0.0.1, on a real sd-event loop.
#include "probes/http_probe.h"

#include <catch2/catch.hpp>
#include <string>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

std::string HttpProbeIni(const std::string& url, const std::string& extra = "") {
  return "[probe api]\ntype = http\nurl = " + url + "\n" + extra;
}

// Parses, instantiates and runs one http probe once.
TimedResult RunHttp(const std::string& ini, const std::string& base = "") {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse(ini, base)->Instantiate(context);
  return RunOnce(loop, *probe);
}

}  // namespace

TEST_CASE("http probe: 200 with a JSON body is up and flattens the JSON into fields", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(
        200, R"({"db":{"ok":true,"lag":0.25,"name":"primary","none":null},"queues":[3,7]})", "",
        "application/json"));
  });
  const TimedResult run = RunHttp(HttpProbeIni(server.Url("/health")));
  const ProbeResult& result = run.result;
  CHECK(result.up);
  CHECK(result.error.empty());
  CHECK(Number(result, "status") == 200);
  CHECK(Number(result, "body_bytes") > 10);
  CHECK(Number(result, "json.db.ok") == 1);
  CHECK(Number(result, "json.db.lag") == 0.25);
  CHECK(std::get<std::string>(result.fields.at("json.db.name")) == "primary");
  CHECK(result.fields.count("json.db.none") == 0);
  CHECK(Number(result, "json.queues.1") == 7);
  CHECK(result.latency_seconds > 0);
  CHECK(result.latency_seconds < 5);
  CHECK(result.fields.count("phase.dns") == 1);
  CHECK(result.fields.count("phase.connect") == 1);
  CHECK(result.fields.count("phase.first_byte") == 1);
  CHECK(result.fields.count("phase.tls") == 0);
  CHECK(result.fields.count("cert_expiry") == 0);
}

TEST_CASE("http probe: 503 is down and reports the status", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(503, "overloaded"));
  });
  const ProbeResult result = RunHttp(HttpProbeIni(server.Url("/"))).result;
  CHECK_FALSE(result.up);
  CHECK(Number(result, "status") == 503);
  CHECK(result.error == "status 503 not in 200-299");
}

TEST_CASE("http probe: expect_status accepts lists and ranges", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(204, "")); });
  CHECK(RunHttp(HttpProbeIni(server.Url("/"), "expect_status = 200, 204\n")).result.up);
  const ProbeResult result =
      RunHttp(HttpProbeIni(server.Url("/"), "expect_status = 200,300-399\n")).result;
  CHECK_FALSE(result.up);
  CHECK(result.error == "status 204 not in 200,300-399");
}

TEST_CASE("http probe: expect_body must match the body", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(200, "status: degraded"));
  });
  const ProbeResult down =
      RunHttp(HttpProbeIni(server.Url("/"), "expect_body = status: (ok|fine)\n")).result;
  CHECK_FALSE(down.up);
  CHECK(Number(down, "status") == 200);
  CHECK(down.error == "body does not match /status: (ok|fine)/");
  CHECK(RunHttp(HttpProbeIni(server.Url("/"), "expect_body = ^status: [a-z]+$\n")).result.up);
}

TEST_CASE("http probe: sends method, headers, body and the bearer token", "[http]") {
  TempDir dir;
  dir.Write("token", "  s3cret-token\n");
  setenv("ROLLGUARD_TEST_API_KEY", "key-from-env", 1);
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(201, "created"));
  });
  const ProbeResult result = RunHttp(HttpProbeIni(server.Url("/submit?x=1"),
                                                  "method = PUT\n"
                                                  "header = X-Probe: rollguard\n"
                                                  "header = X-Api-Key: env:ROLLGUARD_TEST_API_KEY\n"
                                                  "body = {\"ping\": 1}\n"
                                                  "bearer_token_file = token\n"),
                                     dir.path())
                                 .result;
  CHECK(result.up);
  const auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  const HttpRequest& request = requests[0];
  CHECK(request.method == "PUT");
  CHECK(request.target == "/submit?x=1");
  CHECK(request.headers.at("x-probe") == "rollguard");
  CHECK(request.headers.at("x-api-key") == "key-from-env");
  CHECK(request.headers.at("authorization") == "Bearer s3cret-token");
  CHECK(request.body == "{\"ping\": 1}");
  CHECK(request.headers.count("expect") == 0);
}

TEST_CASE("http probe: redirects are reported unless follow_redirects", "[http]") {
  EACH_HTTP_ENGINE();
  TestServer server([](const HttpRequest& request, Connection& connection) {
    if (request.target == "/old") {
      connection.Write(Response(302, "", "Location: /new\r\n"));
    } else {
      connection.Write(Response(200, "new"));
    }
  });
  const ProbeResult not_followed = RunHttp(HttpProbeIni(server.Url("/old"))).result;
  CHECK_FALSE(not_followed.up);
  CHECK(not_followed.error == "status 302 not in 200-299");

  const ProbeResult followed =
      RunHttp(HttpProbeIni(server.Url("/old"), "follow_redirects = true\n")).result;
  CHECK(followed.up);
  CHECK(Number(followed, "status") == 200);
  CHECK(Number(followed, "body_bytes") == 3);
}

TEST_CASE("http probe: a redirect loop stops after 10 redirects", "[http]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(301, "", "Location: /again\r\n"));
  });
  const TimedResult run = RunHttp(HttpProbeIni(server.Url("/again"), "follow_redirects = true\n"));
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "more than 10 redirects");
  CHECK(server.requests().size() == 11);
}

TEST_CASE("http probe: a redirect to another protocol is refused", "[http]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(302, "", "Location: file:///etc/passwd\r\n"));
  });
  const ProbeResult result =
      RunHttp(HttpProbeIni(server.Url("/"), "follow_redirects = true\n")).result;
  CHECK_FALSE(result.up);
  CHECK_THAT(result.error, Catch::StartsWith("refused a non-HTTP(S) URL"));
}

TEST_CASE("http probe: no listener is 'connection refused', at once", "[http]") {
  EACH_HTTP_ENGINE();
  RefusingPort port;
  const TimedResult run = RunHttp(
      HttpProbeIni("http://" + TestServer::UrlHost() + ":" + std::to_string(port.port()) + "/"));
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "connection refused");
  CHECK(run.result.fields.count("status") == 0);
  CHECK(run.seconds < 1.0);
}
