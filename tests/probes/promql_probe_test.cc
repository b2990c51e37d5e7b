// The promql probe: against a real Prometheus (Debian's /usr/bin/prometheus) that scrapes
// a target the test controls, and against scripted endpoints for the failure paths.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <thread>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

constexpr const char* kPrometheus = "/usr/bin/prometheus";

// A free loopback port: bound to 0, read back, released (Prometheus cannot take a socket).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A real Prometheus on 127.0.0.1, scraping `target` every second; killed (SIGKILL, and
// by the kernel should this test process die first) when the object goes.
class PrometheusProcess {
 public:
  PrometheusProcess(const TempDir& dir, int target_port) {
    port_ = FreePort();
    const std::string config =
        dir.Write("prometheus.yml",
                  "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                  "scrape_configs:\n  - job_name: target\n    static_configs:\n"
                  "      - targets: ['127.0.0.1:" +
                      std::to_string(target_port) + "']\n");
    const std::string storage = "--storage.tsdb.path=" + dir.path() + "/data";
    const std::string config_flag = "--config.file=" + config;
    const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
    const std::string log = dir.path() + "/prometheus.log";
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      if (out != nullptr) ::dup2(::fileno(out), STDERR_FILENO);
      ::execl(kPrometheus, kPrometheus, config_flag.c_str(), storage.c_str(), listen.c_str(),
              "--log.level=warn", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~PrometheusProcess() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  PrometheusProcess(const PrometheusProcess&) = delete;
  PrometheusProcess& operator=(const PrometheusProcess&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string ServerSection(const std::string& url, const std::string& name = "") {
  return std::string("[prometheus") + (name.empty() ? "" : " " + name) + "]\nurl = " + url + "\n";
}

// Parses `probe_ini` with the [prometheus] sections in `servers_ini` configured.
std::shared_ptr<const ProbeConfig> MustParsePromql(const std::string& servers_ini,
                                                   const std::string& probe_ini,
                                                   const std::string& base = "") {
  auto servers = ParseIni(servers_ini, "rollguard.conf");
  REQUIRE(servers.ok());
  ProbeParseContext context{base};
  std::vector<std::string> errors;
  for (const IniSection& section : servers->sections) {
    auto server = ParsePrometheusSection(section, base, &errors);
    if (server) context.prometheus_servers.push_back(*server);
  }
  REQUIRE(errors.empty());
  auto probe = ParseIni(probe_ini, "promql.rules");
  REQUIRE(probe.ok());
  auto config = ParseProbeSection(probe->sections.at(0), context);
  if (!config.ok()) FAIL(config.error().message);
  return *config;
}

std::string PromqlParseError(const std::string& servers_ini, const std::string& probe_ini) {
  auto servers = ParseIni(servers_ini, "rollguard.conf");
  REQUIRE(servers.ok());
  ProbeParseContext context;
  std::vector<std::string> errors;
  for (const IniSection& section : servers->sections) {
    auto server = ParsePrometheusSection(section, "", &errors);
    if (server) context.prometheus_servers.push_back(*server);
  }
  if (!errors.empty()) return errors.front();
  auto probe = ParseIni(probe_ini, "promql.rules");
  REQUIRE(probe.ok());
  auto config = ParseProbeSection(probe->sections.at(0), context);
  REQUIRE_FALSE(config.ok());
  return config.error().message;
}

ProbeResult Query(EventLoop& loop, ProbeContext& context, const std::string& url,
                  const std::string& query, const std::string& extra = "") {
  auto probe = MustParsePromql(ServerSection(url) + extra,
                               "[probe q]\ntype = promql\ntimeout = 3s\nquery = " + query + "\n")
                   ->Instantiate(context);
  return RunOnce(loop, *probe).result;
}

bool Has(const ProbeResult& result, const std::string& field) {
  return result.fields.count(field) != 0;
}

}  // namespace

TEST_CASE("promql probe: a real Prometheus sees the scraped value change", "[promql][real]") {
  if (::access(kPrometheus, X_OK) != 0) {
    WARN("skipped: " << kPrometheus << " is missing (Debian package prometheus)");
    return;
  }
  std::atomic<int> value{1};
  TestServer target([&](const HttpRequest&, Connection& connection) {
    const std::string v = std::to_string(value.load());
    connection.Write(
        Response(200,
                 "# TYPE rg_test_value gauge\n"
                 "rg_test_value{series=\"a\"} " +
                     v + "\nrg_test_value{series=\"b\"} 10\nrg_test_value{series=\"c\"} -4\n",
                 "", "text/plain; version=0.0.4"));
  });
  TempDir dir;
  PrometheusProcess prometheus(dir, target.port());
  EventLoop loop;
  ProbeContext context(loop.get());

  // Bounded start: /-/ready answers 200 once the TSDB is open and the API serves.
  auto ready = MustParse("[probe ready]\ntype = http\ntimeout = 1s\nurl = " + prometheus.url() +
                         "/-/ready\n")
                   ->Instantiate(context);
  const auto start = std::chrono::steady_clock::now();
  while (!RunOnce(loop, *ready).result.up) {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(30)) {
      FAIL("Prometheus did not become ready within 30s; see " << dir.path() << "/prometheus.log");
    }
    loop.RunFor(std::chrono::milliseconds(200));
  }

  auto wait_for = [&](const std::string& query, double expected) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    ProbeResult result;
    do {
      result = Query(loop, context, prometheus.url(), query);
      if (result.up && Has(result, "value") && Number(result, "value") == expected) return result;
      loop.RunFor(std::chrono::milliseconds(250));
    } while (std::chrono::steady_clock::now() < deadline);
    FAIL("query " << query << " never returned " << expected << "; last error: " << result.error);
    return result;
  };

  const ProbeResult first = wait_for("rg_test_value{series=\"a\"}", 1);
  CHECK(Number(first, "count") == 1);
  CHECK(Number(first, "min") == 1);
  CHECK(Number(first, "max") == 1);
  CHECK(Number(first, "sum") == 1);
  CHECK(first.latency_seconds > 0);
  CHECK(first.latency_seconds < 3);

  value = 7;
  wait_for("rg_test_value{series=\"a\"}", 7);

  // Several samples: value is the max; min, max, sum, count over all of them.
  const ProbeResult all = Query(loop, context, prometheus.url(), "rg_test_value");
  REQUIRE(all.up);
  CHECK(Number(all, "count") == 3);
  CHECK(Number(all, "value") == 10);
  CHECK(Number(all, "max") == 10);
  CHECK(Number(all, "min") == -4);
  CHECK(Number(all, "sum") == Approx(7 + 10 - 4));

  // A query spanning continuation lines works (the INI joins them).
  const ProbeResult sum = Query(loop, context, prometheus.url(), "sum(\n    rg_test_value\n  )");
  REQUIRE(sum.up);
  CHECK(Number(sum, "value") == Approx(13));

  // An empty vector: up, count 0, no value to compare.
  const ProbeResult empty = Query(loop, context, prometheus.url(), "rg_no_such_metric");
  CHECK(empty.up);
  CHECK(Number(empty, "count") == 0);
  CHECK_FALSE(Has(empty, "value"));
  CHECK_FALSE(Has(empty, "min"));
  CHECK_FALSE(Has(empty, "max"));
  CHECK_FALSE(Has(empty, "sum"));

  // Scalars, NaN and infinities are values.
  const ProbeResult scalar =
      Query(loop, context, prometheus.url(), "scalar(rg_test_value{series=\"b\"}) * 2");
  CHECK(scalar.up);
  CHECK(Number(scalar, "value") == 20);
  CHECK(Number(scalar, "count") == 1);
  const ProbeResult nan = Query(loop, context, prometheus.url(), "NaN");
  CHECK(nan.up);
  CHECK(std::isnan(Number(nan, "value")));
  const ProbeResult inf = Query(loop, context, prometheus.url(), "1/0");
  CHECK(inf.up);
  CHECK(std::isinf(Number(inf, "value")));
  CHECK(Number(inf, "value") > 0);
  const ProbeResult minus_inf = Query(loop, context, prometheus.url(), "-1/0");
  CHECK(Number(minus_inf, "value") < 0);
  // A NaN sample among numbers: max ignores it, sum does not.
  const ProbeResult mixed =
      Query(loop, context, prometheus.url(),
            "rg_test_value or label_replace(vector(NaN), \"series\", \"n\", \"\", \"\")");
  CHECK(Number(mixed, "count") == 4);
  CHECK(Number(mixed, "max") == 10);
  CHECK(std::isnan(Number(mixed, "sum")));

  // A query Prometheus cannot parse is a configuration error, not an outage.
  const ProbeResult bad = Query(loop, context, prometheus.url(), "sum(rg_test_value");
  CHECK_FALSE(bad.up);
  CHECK(bad.config_error);
  CHECK(bad.error.find("rejected the query (bad_data)") != std::string::npos);
  // So is one that fails in execution (many-to-many matching).
  const ProbeResult execution =
      Query(loop, context, prometheus.url(), "rg_test_value + on() rg_test_value");
  CHECK_FALSE(execution.up);
  CHECK(execution.config_error);
  CHECK(execution.error.find("(execution)") != std::string::npos);
  // And a range vector, which has no single value.
  const ProbeResult range = Query(loop, context, prometheus.url(), "rg_test_value[1m]");
  CHECK_FALSE(range.up);
  CHECK(range.config_error);
  CHECK(range.error == "the query returns a range vector; expected an instant vector or a scalar");
}

TEST_CASE("promql probe: the query is form-encoded with the bearer token and a timeout",
          "[promql]") {
  TestServer server([](const HttpRequest&, Connection& connection) {
    connection.Write(Response(
        200,
        R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}})",
        "", "application/json"));
  });
  TempDir dir;
  const std::string token = dir.Write("prom.token", "s3cret-token\n");
  EventLoop loop;
  ProbeContext context(loop.get());
  const ProbeResult result =
      Query(loop, context, server.Url(""), "sum(rate(x{a=\"b c\"}[5m])) > 0 & 1",
            "timeout = 2s\nbearer_token_file = " + token + "\n");
  CHECK(result.up);
  CHECK(std::isinf(Number(result, "value")));
  REQUIRE(server.requests().size() == 1);
  const HttpRequest request = server.requests().front();
  CHECK(request.method == "POST");
  CHECK(request.target == "/api/v1/query");
  CHECK(request.headers.at("authorization") == "Bearer s3cret-token");
  CHECK(request.headers.at("content-type") == "application/x-www-form-urlencoded");
  CHECK(request.body ==
        "query=sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B5m%5D%29%29%20%3E%200%20%26%201&timeout=2."
        "000000");
}

TEST_CASE("promql probe: unavailable, 5xx and unreachable servers are failed probes", "[promql]") {
  std::atomic<int> mode{0};
  TestServer server([&](const HttpRequest&, Connection& connection) {
    if (mode == 0) {
      connection.Write(
          Response(503, R"({"status":"error","errorType":"unavailable","error":"TSDB not ready"})",
                   "", "application/json"));
    } else if (mode == 1) {
      connection.Write(Response(502, "<html>Bad Gateway</html>", "", "text/html"));
    } else if (mode == 2) {
      connection.Write(Response(
          503,
          R"({"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"})",
          "", "application/json"));
    } else {
      connection.Hang();
    }
  });
  EventLoop loop;
  ProbeContext context(loop.get());

  const ProbeResult unavailable = Query(loop, context, server.Url(""), "up");
  CHECK_FALSE(unavailable.up);
  CHECK_FALSE(unavailable.config_error);
  CHECK(unavailable.error ==
        "Prometheus (default) rejected the query (unavailable): TSDB not ready");

  mode = 1;
  const ProbeResult gateway = Query(loop, context, server.Url(""), "up");
  CHECK_FALSE(gateway.up);
  CHECK_FALSE(gateway.config_error);
  CHECK(gateway.error == "Prometheus (default) answered HTTP 502");

  mode = 2;
  const ProbeResult timeout = Query(loop, context, server.Url(""), "up");
  CHECK_FALSE(timeout.up);
  CHECK_FALSE(timeout.config_error);
  CHECK(timeout.error.find("(timeout)") != std::string::npos);

  mode = 3;
  auto probe = MustParsePromql(ServerSection(server.Url("")) + "timeout = 300ms\n",
                               "[probe q]\ntype = promql\nquery = up\n")
                   ->Instantiate(context);
  const TimedResult hung = RunOnce(loop, *probe);
  CHECK_FALSE(hung.result.up);
  CHECK(hung.result.error == "Prometheus (default) did not answer within 300ms");
  CHECK(hung.seconds < 1.5);

  RefusingPort refused;
  const ProbeResult down =
      Query(loop, context, "http://127.0.0.1:" + std::to_string(refused.port()), "up");
  CHECK_FALSE(down.up);
  CHECK_FALSE(down.config_error);
  CHECK(down.error.find("cannot reach Prometheus (default) at http://127.0.0.1:") == 0);
}

TEST_CASE("promql probe: named servers, and errors naming file, line, section and key",
          "[promql][parse]") {
  TestServer other([](const HttpRequest&, Connection& connection) {
    connection.Write(
        Response(200, R"({"status":"success","data":{"resultType":"scalar","result":[1,"42"]}})",
                 "", "application/json"));
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParsePromql(ServerSection("http://127.0.0.1:1") +
                                   ServerSection(other.Url("/prom/"), "longterm"),
                               "[probe q]\ntype = promql\nserver = longterm\nquery = x\n")
                   ->Instantiate(context);
  const ProbeResult result = RunOnce(loop, *probe).result;
  CHECK(result.up);
  CHECK(Number(result, "value") == 42);
  REQUIRE(other.requests().size() == 1);
  CHECK(other.requests().front().target == "/prom/api/v1/query");

  CHECK(PromqlParseError(ServerSection("http://127.0.0.1:9090", "a"),
                         "[probe q]\ntype = promql\nquery = up\n") ==
        "promql.rules:1: [probe q]: missing key \"server\": there is no unnamed [prometheus] "
        "section to default to (add one, or set server = NAME; the configured servers are a)");
  CHECK(PromqlParseError(ServerSection("http://127.0.0.1:9090"),
                         "[probe q]\ntype = promql\nserver = lts\nquery = up\n") ==
        "promql.rules:3: [probe q] server: expected the name of a [prometheus NAME] section (no "
        "[prometheus NAME] section is configured), got \"lts\"");
  CHECK(PromqlParseError(ServerSection("http://127.0.0.1:9090"), "[probe q]\ntype = promql\n") ==
        "promql.rules:1: [probe q]: missing required key \"query\"");
  CHECK(PromqlParseError("[prometheus]\nurl = 127.0.0.1:9090\n", "") ==
        "rollguard.conf:2: [prometheus] url: expected an http:// or https:// base URL like "
        "http://127.0.0.1:9090 (no query or fragment), got \"127.0.0.1:9090\"");
  CHECK(PromqlParseError("[prometheus]\nurl = http://x\ntimeout = soon\n", "") ==
        "rollguard.conf:3: [prometheus] timeout: expected a duration like 250ms, 5s or 1m30s, got "
        "\"soon\"");
  CHECK(PromqlParseError("[prometheus]\nurl = http://x\nbearer_token_file = /nonexistent/t\n", "")
            .find("rollguard.conf:3: [prometheus] bearer_token_file: expected a readable file") ==
        0);
  CHECK(PromqlParseError("[prometheus]\nurl = http://x\nuser = bob\n", "")
            .find("rollguard.conf:3: [prometheus] user: unknown key") == 0);
}
