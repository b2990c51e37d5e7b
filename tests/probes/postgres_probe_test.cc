// The postgres probe against a real PostgreSQL (Debian's postgresql package), started by
// the test on a free loopback port with scram-sha-256 and TLS: values, authentication,
// query errors, TLS verification, refused and silent servers, concurrency.
#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
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

// Starts a server, or explains why the test is skipped (nullptr). A server that is
// installed but does not start fails the test.
std::unique_ptr<PostgresServer> StartPostgres() {
  std::string why_not;
  bool skip = false;
  std::unique_ptr<PostgresServer> server = PostgresServer::Start(&why_not, &skip);
  if (server == nullptr && !skip) FAIL("could not start PostgreSQL: " << why_not);
  if (server == nullptr) WARN("skipped: " << why_not);
  return server;
}

// One server per test process, shared by the sections of a test case (a cluster takes
// seconds to create).
PostgresServer* SharedPostgres() {
  static std::unique_ptr<PostgresServer> server;
  static bool tried = false;
  if (!tried) {
    tried = true;
    server = StartPostgres();
  }
  return server.get();
}

std::string ProbeIni(const std::string& dsn, const std::string& extra,
                     const std::string& timeout = "3s") {
  return "[probe db]\ntype = postgres\ndsn = " + dsn + "\ntimeout = " + timeout + "\n" + extra;
}

TimedResult RunPostgres(const std::string& ini) {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse(ini)->Instantiate(context);
  return RunOnce(loop, *probe);
}

bool HasValue(const ProbeResult& result) { return result.fields.count("value") == 1; }

}  // namespace

TEST_CASE("postgres probe: a real server with scram-sha-256 and TLS", "[postgres]") {
  PostgresServer* server = SharedPostgres();
  if (server == nullptr) return;
  TempDir dir;
  const std::string password_file = dir.Write("pw", server->password() + "\n");
  const std::string auth = "password_file = " + password_file + "\n";

  SECTION("SELECT 42 is up with value 42") {
    const TimedResult run = RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT 42\n"));
    INFO(run.result.error);
    CHECK(run.result.up);
    CHECK(run.result.error.empty());
    CHECK(Number(run.result, "value") == 42);
    CHECK(run.result.latency_seconds > 0);
    CHECK(run.result.latency_seconds < 3);
  }
  SECTION("the default query SELECT 1 gives value 1") {
    const TimedResult run = RunPostgres(ProbeIni(server->Dsn(), auth));
    CHECK(run.result.up);
    CHECK(Number(run.result, "value") == 1);
  }
  SECTION("numeric, float and boolean first columns are numbers") {
    CHECK(Number(RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT 2.5::numeric, 'x'\n"))
                     .result,
                 "value") == 2.5);
    CHECK(
        Number(RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT -1e-3::float8\n")).result,
               "value") == -0.001);
    CHECK(Number(RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT true\n")).result,
                 "value") == 1);
  }
  SECTION("NULL, text and no rows are up without a value") {
    for (const char* query : {"SELECT NULL::int", "SELECT 'abc'", "SELECT 1 WHERE false",
                              "SET statement_timeout = 0"}) {
      INFO(query);
      const TimedResult run =
          RunPostgres(ProbeIni(server->Dsn(), auth + "query = " + query + "\n"));
      CHECK(run.result.up);
      CHECK_FALSE(HasValue(run.result));
    }
  }
  SECTION("the connection says application_name rollguard and is fresh on every run") {
    EventLoop loop;
    ProbeContext context(loop.get());
    auto probe = MustParse(ProbeIni(server->Dsn(),
                                    auth + "query = SELECT pg_backend_pid() FROM pg_stat_activity "
                                           "WHERE pid = pg_backend_pid() AND application_name = "
                                           "'rollguard'\n"))
                     ->Instantiate(context);
    const TimedResult first = RunOnce(loop, *probe);
    const TimedResult second = RunOnce(loop, *probe);
    REQUIRE(first.result.up);
    REQUIRE(second.result.up);
    // A row only when application_name matched; a new backend (pid) for each run.
    CHECK(Number(first.result, "value") != Number(second.result, "value"));
  }
  SECTION("a query error is up 0 with the server's message") {
    const TimedResult run = RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT 1/0\n"));
    CHECK_FALSE(run.result.up);
    CHECK_THAT(run.result.error,
               Catch::StartsWith("query failed: ") && Catch::Contains("division by zero"));
    CHECK_FALSE(HasValue(run.result));
  }
  SECTION("a later statement's error fails the run too") {
    const TimedResult run = RunPostgres(
        ProbeIni(server->Dsn(), auth + "query = SELECT 7; SELECT * FROM no_such_table\n"));
    CHECK_FALSE(run.result.up);
    CHECK_THAT(run.result.error, Catch::Contains("no_such_table"));
  }
  SECTION("a query that runs past the timeout is abandoned at the timeout") {
    const TimedResult run =
        RunPostgres(ProbeIni(server->Dsn(), auth + "query = SELECT pg_sleep(5)\n", "1s"));
    CHECK_FALSE(run.result.up);
    CHECK(run.result.error == "timed out after 1s waiting for the query's result");
    CHECK(run.seconds >= 0.9);
    CHECK(run.seconds < 2.0);
  }
  SECTION("a wrong password is up 0, names authentication, never the password") {
    const std::string wrong = "Wr0ng-" + server->password().substr(0, 6) + "-pass";
    const std::string wrong_file = dir.Write("wrong", wrong + "\n");
    const TimedResult run =
        RunPostgres(ProbeIni(server->Dsn(), "password_file = " + wrong_file + "\n"));
    CHECK_FALSE(run.result.up);
    CHECK_THAT(run.result.error, Catch::Contains("password authentication failed for user"));
    CHECK_THAT(run.result.error, !Catch::Contains(wrong) && !Catch::Contains(server->password()));
    CHECK(run.result.error.find('\n') == std::string::npos);
  }
  SECTION("no password at all is up 0 with libpq's reason") {
    const TimedResult run = RunPostgres(ProbeIni(server->Dsn(), ""));
    CHECK_FALSE(run.result.up);
    CHECK_THAT(run.result.error, Catch::Contains("password"));
  }
  SECTION("the password may come from env:NAME") {
    ::setenv("ROLLGUARD_TEST_PG_PASSWORD", server->password().c_str(), 1);
    const TimedResult run =
        RunPostgres(ProbeIni(server->Dsn(), "password_file = env:ROLLGUARD_TEST_PG_PASSWORD\n"));
    ::unsetenv("ROLLGUARD_TEST_PG_PASSWORD");
    CHECK(run.result.up);
  }
  SECTION("sslmode=require connects over TLS") {
    const TimedResult run =
        RunPostgres(ProbeIni(server->Dsn() + " sslmode=require",
                             auth + "query = SELECT count(*) FROM pg_stat_ssl WHERE pid = "
                                    "pg_backend_pid() AND ssl\n"));
    INFO(run.result.error);
    CHECK(run.result.up);
    CHECK(Number(run.result, "value") == 1);
  }
  SECTION("sslmode=verify-full with the server's certificate as CA succeeds") {
    const TimedResult run = RunPostgres(ProbeIni(
        server->Dsn() + " sslmode=verify-full sslrootcert=" + server->certificate_file(), auth));
    INFO(run.result.error);
    CHECK(run.result.up);
  }
  SECTION("a postgresql:// URI works as the dsn") {
    const TimedResult run =
        RunPostgres(ProbeIni("postgresql://rollguard@127.0.0.1:" + std::to_string(server->port()) +
                                 "/postgres?sslmode=require",
                             auth + "query = SELECT 3\n"));
    INFO(run.result.error);
    CHECK(Number(run.result, "value") == 3);
  }
  SECTION("a host name is resolved on the loop, and verify-full checks that name") {
    const std::string dsn = "host=localhost port=" + std::to_string(server->port()) +
                            " user=rollguard dbname=postgres sslmode=verify-full sslrootcert=" +
                            server->certificate_file();
    const TimedResult run = RunPostgres(ProbeIni(dsn, auth));
    INFO(run.result.error);
    CHECK(run.result.up);
  }
  SECTION("sslmode=verify-full with the wrong CA fails with a certificate error") {
    TempDir other;
    MakeSelfSignedCertificate(other, 2);
    const TimedResult run = RunPostgres(ProbeIni(
        server->Dsn() + " sslmode=verify-full sslrootcert=" + other.path() + "/cert.pem", auth));
    CHECK_FALSE(run.result.up);
    CHECK_THAT(run.result.error, Catch::Contains("certificate verify failed"));
    CHECK(run.seconds < 3);
  }
  SECTION("many probes run at once: silent servers do not delay a healthy one") {
    SilentListener silent;
    EventLoop loop;
    ProbeContext context(loop.get());
    std::vector<std::unique_ptr<Probe>> probes;
    for (int i = 0; i < 12; ++i) {
      probes.push_back(MustParse(ProbeIni("host=127.0.0.1 port=" + std::to_string(silent.port()) +
                                              " user=x dbname=x",
                                          "", "1s"))
                           ->Instantiate(context));
    }
    probes.push_back(
        MustParse(ProbeIni(server->Dsn(), auth + "query = SELECT 5\n"))->Instantiate(context));
    std::vector<std::optional<ProbeResult>> results(probes.size());
    std::vector<double> seconds(probes.size());
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < probes.size(); ++i) {
      probes[i]->Start([&, i](ProbeResult result) {
        seconds[i] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
    CHECK(Number(*results.back(), "value") == 5);
    CHECK(seconds.back() < *std::min_element(seconds.begin(), seconds.end() - 1));  // first
    for (size_t i = 0; i + 1 < results.size(); ++i) {
      CHECK_FALSE(results[i]->up);
      CHECK(results[i]->error == "timed out after 1s while connecting");
    }
    CHECK(total < 3.0);  // concurrently: 12 timeouts in a row would take 12s
  }
}

TEST_CASE("postgres probe: a stopped server is 'connection refused'", "[postgres]") {
  std::unique_ptr<PostgresServer> server = StartPostgres();
  if (server == nullptr) return;
  TempDir dir;
  const std::string ini =
      ProbeIni(server->Dsn(), "password_file = " + dir.Write("pw", server->password()) + "\n");
  CHECK(RunPostgres(ini).result.up);
  server->Stop();
  const TimedResult run = RunPostgres(ini);
  CHECK_FALSE(run.result.up);
  CHECK_THAT(run.result.error, Catch::Contains("Connection refused"));
  CHECK(run.seconds < 1.5);
}

TEST_CASE("postgres probe: a server that accepts and never speaks costs the timeout",
          "[postgres]") {
  SilentListener silent;
  const TimedResult run = RunPostgres(
      ProbeIni("host=127.0.0.1 port=" + std::to_string(silent.port()) + " user=x", "", "1s"));
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "timed out after 1s while connecting");
  CHECK(run.seconds >= 0.9);
  CHECK(run.seconds < 2.0);
  CHECK(run.result.latency_seconds >= 0.9);
}

TEST_CASE("postgres probe: configuration errors name file, line, section and key", "[postgres]") {
  CHECK(ParseError("[probe db]\ntype = postgres\n") ==
        "probes.conf:1: [probe db]: missing required key \"dsn\"");
  CHECK_THAT(ParseError("[probe db]\ntype = postgres\ndsn = host=x bogus=1\n"),
             Catch::StartsWith("probes.conf:3: [probe db] dsn: expected a libpq conninfo string") &&
                 Catch::Contains("bogus"));
  const std::string with_password =
      ParseError("[probe db]\ntype = postgres\ndsn = host=x password=hunter2\n");
  CHECK_THAT(with_password, Catch::StartsWith("probes.conf:3: [probe db] dsn: expected a dsn "
                                              "without a password") &&
                                !Catch::Contains("hunter2"));
  CHECK_THAT(ParseError("[probe db]\ntype = postgres\ndsn = postgresql://u:hunter2@h/db\n"),
             Catch::Contains("without a password") && !Catch::Contains("hunter2"));
  CHECK_THAT(ParseError("[probe db]\ntype = postgres\ndsn = host=x\nquery =\n"),
             Catch::StartsWith("probes.conf:4: [probe db] query: expected an SQL query"));
  CHECK_THAT(ParseError("[probe db]\ntype = postgres\ndsn = host=x\npasword_file = /x\n"),
             Catch::StartsWith("probes.conf:4: [probe db] pasword_file:"));
  CHECK_THAT(
      ParseError("[probe db]\ntype = postgres\ndsn = host=x\npassword_file = /nonexistent/pw\n"),
      Catch::StartsWith("probes.conf:4: [probe db] password_file: expected a readable file"));
}

TEST_CASE("postgres probe: Cancel and destruction mid-run leave nothing behind", "[postgres]") {
  SilentListener silent;
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse(ProbeIni("host=127.0.0.1 port=" + std::to_string(silent.port()), "", "1s"))
                   ->Instantiate(context);
  bool called = false;
  probe->Start([&](ProbeResult) { called = true; });
  loop.RunFor(std::chrono::milliseconds(100));
  probe->Cancel();
  loop.RunFor(std::chrono::milliseconds(1200));
  CHECK_FALSE(called);
  // A probe restarted from its own callback, then destroyed mid-run.
  int runs = 0;
  std::function<void(ProbeResult)> again = [&](ProbeResult result) {
    CHECK(result.error == "timed out after 1s while connecting");
    if (++runs < 2) probe->Start(again);
  };
  probe->Start(again);
  REQUIRE(loop.RunUntil([&] { return runs == 2; }, std::chrono::seconds(5)));
  probe->Start([&](ProbeResult) { called = true; });
  loop.RunFor(std::chrono::milliseconds(100));
  probe.reset();  // mid-run: ASan reports any leak or use after free
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK_FALSE(called);
}
