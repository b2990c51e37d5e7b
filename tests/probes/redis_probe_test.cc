// The redis probe against a real redis-server (Debian's redis-server package), started by
// the test on a free loopback port with a password: replies and values, AUTH, SELECT,
// error replies, killed and silent servers, concurrency.
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/real_servers.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

constexpr const char* kPassword = "s3cret-Redis-pw";

std::unique_ptr<RedisServer> StartRedis(const std::string& password = kPassword) {
  std::string why_not;
  bool skip = false;
  std::unique_ptr<RedisServer> server = RedisServer::Start(password, &why_not, &skip);
  if (server == nullptr && !skip) FAIL("could not start redis-server: " << why_not);
  if (server == nullptr) WARN("skipped: " << why_not);
  return server;
}

// A probe section against `address` with the password in a file in `dir`.
std::string ProbeIni(const std::string& address, const std::string& extra,
                     const std::string& timeout = "2s") {
  return "[probe cache]\ntype = redis\naddress = " + address + "\ntimeout = " + timeout + "\n" +
         extra;
}

std::string Auth(const TempDir& dir, const std::string& password = kPassword) {
  return "password_file = " + dir.Write("pw", password + "\n") + "\n";
}

TimedResult RunRedis(const std::string& ini) {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse(ini)->Instantiate(context);
  return RunOnce(loop, *probe);
}

bool HasValue(const ProbeResult& result) { return result.fields.count("value") == 1; }

}  // namespace

TEST_CASE("redis probe: PING on a real server is up, without a value", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  const TimedResult run = RunRedis(ProbeIni(server->address(), Auth(dir)));
  INFO(run.result.error);
  CHECK(run.result.up);
  CHECK(run.result.error.empty());
  CHECK_FALSE(HasValue(run.result));
  CHECK(run.result.latency_seconds > 0);
  CHECK(run.result.latency_seconds < 1);
}

TEST_CASE("redis probe: integer and numeric string replies are the value", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  REQUIRE(server->Command(0, {"SET", "deploys", "41"}) == "OK");
  REQUIRE(server->Command(0, {"SET", "queue depth", "2.5"}) == "OK");
  REQUIRE(server->Command(0, {"SET", "name", "api"}) == "OK");
  EventLoop loop;
  ProbeContext context(loop.get());
  auto incr = MustParse(ProbeIni(server->address(), Auth(dir) + "command = INCR deploys\n"))
                  ->Instantiate(context);
  CHECK(Number(RunOnce(loop, *incr).result, "value") == 42);
  CHECK(Number(RunOnce(loop, *incr).result, "value") == 43);  // a new run each time
  CHECK(server->Command(0, {"GET", "deploys"}) == "43");
  CHECK(Number(RunRedis(ProbeIni(server->address(), Auth(dir) + "command = GET deploys\n")).result,
               "value") == 43);
  CHECK(Number(RunRedis(ProbeIni(server->address(), Auth(dir) + "command = DBSIZE\n")).result,
               "value") == 3);
  CHECK(
      Number(
          RunRedis(ProbeIni(server->address(), Auth(dir) + "command = GET 'queue depth'\n")).result,
          "value") == 2.5);
  for (const char* command : {"GET name", "GET missing", "KEYS *"}) {
    INFO(command);
    const TimedResult run =
        RunRedis(ProbeIni(server->address(), Auth(dir) + "command = " + command + "\n"));
    CHECK(run.result.up);
    CHECK_FALSE(HasValue(run.result));
  }
}

TEST_CASE("redis probe: db selects the database before the command", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  REQUIRE(server->Command(3, {"SET", "k", "7"}) == "OK");
  CHECK(
      Number(RunRedis(ProbeIni(server->address(), Auth(dir) + "db = 3\ncommand = GET k\n")).result,
             "value") == 7);
  CHECK_FALSE(
      HasValue(RunRedis(ProbeIni(server->address(), Auth(dir) + "command = GET k\n")).result));
  const TimedResult out_of_range =
      RunRedis(ProbeIni(server->address(), Auth(dir) + "db = 99\ncommand = GET k\n"));
  CHECK_FALSE(out_of_range.result.up);
  CHECK_THAT(out_of_range.result.error, Catch::StartsWith("SELECT 99 failed: ERR"));
}

TEST_CASE("redis probe: a wrong or missing password is up 0 and never shows the secret",
          "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  const std::string wrong = "not-the-" + std::string(kPassword);
  const TimedResult bad = RunRedis(ProbeIni(server->address(), Auth(dir, wrong)));
  CHECK_FALSE(bad.result.up);
  CHECK_THAT(bad.result.error, Catch::StartsWith("authentication (AUTH) failed: WRONGPASS"));
  CHECK_THAT(bad.result.error, !Catch::Contains(wrong) && !Catch::Contains(kPassword));

  const TimedResult none = RunRedis(ProbeIni(server->address(), ""));
  CHECK_FALSE(none.result.up);
  CHECK_THAT(none.result.error, Catch::StartsWith("PING failed: NOAUTH"));
}

TEST_CASE("redis probe: an error reply to the command is up 0", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  const TimedResult run =
      RunRedis(ProbeIni(server->address(), Auth(dir) + "command = NOSUCHCOMMAND x\n"));
  CHECK_FALSE(run.result.up);
  CHECK_THAT(run.result.error, Catch::StartsWith("NOSUCHCOMMAND failed: ERR unknown command"));
}

TEST_CASE("redis probe: a host name is resolved without blocking and connects", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  const TimedResult run =
      RunRedis(ProbeIni("localhost:" + std::to_string(server->port()), Auth(dir)));
  INFO(run.result.error);
  CHECK(run.result.up);
}

TEST_CASE("redis probe: a server without a password needs no password_file", "[redis]") {
  auto server = StartRedis("");
  if (server == nullptr) return;
  CHECK(RunRedis(ProbeIni(server->address(), "")).result.up);
}

TEST_CASE("redis probe: a killed server is 'connection refused'", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  TempDir dir;
  const std::string ini = ProbeIni(server->address(), Auth(dir));
  CHECK(RunRedis(ini).result.up);
  server->Kill();
  const TimedResult run = RunRedis(ini);
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "connection refused");
  CHECK(run.seconds < 1);
}

TEST_CASE("redis probe: a listener that never answers costs the timeout", "[redis]") {
  SilentListener silent;
  TempDir dir;
  const TimedResult run =
      RunRedis(ProbeIni("127.0.0.1:" + std::to_string(silent.port()), Auth(dir), "1s"));
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "timed out after 1s waiting for the reply");
  CHECK_THAT(run.result.error, !Catch::Contains(kPassword));
  CHECK(run.seconds >= 0.9);
  CHECK(run.seconds < 2.0);
}

TEST_CASE("redis probe: silent servers do not delay a healthy one", "[redis]") {
  auto server = StartRedis();
  if (server == nullptr) return;
  SilentListener silent;
  TempDir dir;
  EventLoop loop;
  ProbeContext context(loop.get());
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < 12; ++i) {
    probes.push_back(MustParse(ProbeIni("127.0.0.1:" + std::to_string(silent.port()), "", "1s"))
                         ->Instantiate(context));
  }
  probes.push_back(MustParse(ProbeIni(server->address(), Auth(dir) + "command = DBSIZE\n"))
                       ->Instantiate(context));
  std::vector<std::optional<ProbeResult>> results(probes.size());
  std::vector<double> seconds(probes.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < probes.size(); ++i) {
    probes[i]->Start([&, i](ProbeResult result) {
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      results[i] = std::move(result);
    });
  }
  REQUIRE(loop.RunUntil([&] {
    for (const auto& result : results) {
      if (!result) return false;
    }
    return true;
  }));
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(results.back()->up);
  CHECK(seconds.back() < *std::min_element(seconds.begin(), seconds.end() - 1));  // first
  for (size_t i = 0; i + 1 < results.size(); ++i) {
    CHECK(results[i]->error == "timed out after 1s waiting for the reply");
  }
  CHECK(total < 3.0);  // concurrently: 12 timeouts in a row would take 12s
}

TEST_CASE("redis probe: Cancel and destruction mid-run leave nothing behind", "[redis]") {
  SilentListener silent;
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse(ProbeIni("127.0.0.1:" + std::to_string(silent.port()), "", "1s"))
                   ->Instantiate(context);
  bool called = false;
  probe->Start([&](ProbeResult) { called = true; });
  loop.RunFor(std::chrono::milliseconds(100));
  probe->Cancel();
  loop.RunFor(std::chrono::milliseconds(1200));
  CHECK_FALSE(called);
  probe->Start([&](ProbeResult) { called = true; });
  loop.RunFor(std::chrono::milliseconds(100));
  probe.reset();  // mid-run: ASan reports any leak or use after free
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK_FALSE(called);
}

TEST_CASE("redis probe: configuration errors name file, line, section and key", "[redis]") {
  CHECK(ParseError("[probe c]\ntype = redis\n") ==
        "probes.conf:1: [probe c]: missing required key \"address\"");
  CHECK_THAT(ParseError("[probe c]\ntype = redis\naddress = localhost\n"),
             Catch::StartsWith("probes.conf:3: [probe c] address: expected host:port"));
  CHECK_THAT(ParseError("[probe c]\ntype = redis\naddress = h:1\ndb = -1\n"),
             Catch::StartsWith("probes.conf:4: [probe c] db: expected a database number"));
  CHECK_THAT(ParseError("[probe c]\ntype = redis\naddress = h:1\ndb = two\n"),
             Catch::StartsWith("probes.conf:4: [probe c] db: expected a database number"));
  CHECK_THAT(ParseError("[probe c]\ntype = redis\naddress = h:1\ncommand = GET 'open\n"),
             Catch::StartsWith("probes.conf:4: [probe c] command: expected a Redis command"));
  CHECK_THAT(ParseError("[probe c]\ntype = redis\naddress = h:1\npassword = x\n"),
             Catch::StartsWith("probes.conf:4: [probe c] password: unknown key"));
}
