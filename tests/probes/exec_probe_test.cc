// The exec probe: real Nagios plugins from Debian's monitoring-plugins package, perfdata
// parsing with units, timeouts that kill a whole process group.
#include "probes/exec_probe.h"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/strings.h"
#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

constexpr const char* kPlugins = "/usr/lib/nagios/plugins";

bool HavePlugin(const std::string& name) {
  return ::access((std::string(kPlugins) + "/" + name).c_str(), X_OK) == 0;
}

#define REQUIRE_PLUGIN(name)                                                      \
  if (!HavePlugin(name)) {                                                        \
    WARN("skipped: " << kPlugins << "/" << name                                   \
                     << " is missing (Debian package monitoring-plugins-basic)"); \
    return;                                                                       \
  }

TimedResult RunExec(const std::string& command, const std::string& timeout = "5s") {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe check]\ntype = exec\ncommand = " + command +
                         "\ntimeout = " + timeout + "\ninterval = 1m\n")
                   ->Instantiate(context);
  return RunOnce(loop, *probe);
}

double PerfValueOf(const std::vector<PerfValue>& values, const std::string& label) {
  for (const PerfValue& value : values) {
    if (value.label == label) return value.value;
  }
  FAIL("no perfdata label " << label);
  return 0;
}

// True while `pid` exists and is not a zombie.
bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

// An HTTP/1.0-style server: one response per connection, then it closes, as check_http
// (which reads until the server closes) expects.
class ClosingHttpServer {
 public:
  explicit ClosingHttpServer(std::function<std::string(const std::string& request)> respond)
      : respond_(std::move(respond)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ClosingHttpServer() {
    stopping_ = true;
    thread_.join();
    ::close(listener_);
  }
  int port() const { return port_; }
  std::string last_request() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_request_;
  }

 private:
  void Serve() {
    while (!stopping_) {
      pollfd poll_fd{listener_, POLLIN, 0};
      if (::poll(&poll_fd, 1, 20) <= 0) continue;
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval timeout{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        last_request_ = request;
      }
      const std::string response = respond_(request);
      ::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
      ::close(fd);
    }
  }

  std::function<std::string(const std::string&)> respond_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::string last_request_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("perfdata: time units become seconds", "[exec][perfdata]") {
  const auto values = ParsePerfData("OK | a=1.5s b=250ms c=1500us;;;0;10 d=2");
  REQUIRE(values.size() == 4);
  CHECK(PerfValueOf(values, "a") == Approx(1.5));
  CHECK(PerfValueOf(values, "b") == Approx(0.25));
  CHECK(PerfValueOf(values, "c") == Approx(0.0015));
  CHECK(PerfValueOf(values, "d") == Approx(2));
}

TEST_CASE("perfdata: byte units are 1024-based and case-insensitive", "[exec][perfdata]") {
  const auto values = ParsePerfData("DISK OK|b=10B k=2KB m=3MB;1;2;0;9 g=1GB t=1TB kb=1kB");
  CHECK(PerfValueOf(values, "b") == 10);
  CHECK(PerfValueOf(values, "k") == 2048);
  CHECK(PerfValueOf(values, "m") == 3.0 * 1024 * 1024);
  CHECK(PerfValueOf(values, "g") == 1024.0 * 1024 * 1024);
  CHECK(PerfValueOf(values, "t") == 1024.0 * 1024 * 1024 * 1024);
  CHECK(PerfValueOf(values, "kb") == 1024);
}

TEST_CASE("perfdata: percent becomes a fraction, counters stay as written", "[exec][perfdata]") {
  const auto values = ParsePerfData("x | used=45%;80;90;0;100 requests=12345c odd=7furlongs");
  CHECK(PerfValueOf(values, "used") == Approx(0.45));
  CHECK(PerfValueOf(values, "requests") == 12345);
  CHECK(PerfValueOf(values, "odd") == 7);
}

TEST_CASE("perfdata: quoted labels hold spaces, equals signs and doubled quotes",
          "[exec][perfdata]") {
  const auto values = ParsePerfData("OK | 'disk /var'=1KB 'a=b'=2 'it''s'=3 '/'=-4.5e1");
  REQUIRE(values.size() == 4);
  CHECK(PerfValueOf(values, "disk /var") == 1024);
  CHECK(PerfValueOf(values, "a=b") == 2);
  CHECK(PerfValueOf(values, "it's") == 3);
  CHECK(PerfValueOf(values, "/") == -45);
}

TEST_CASE("perfdata: undetermined and malformed items are skipped, the rest kept",
          "[exec][perfdata]") {
  const auto values = ParsePerfData("OK | gone=U 'open=1 =5 novalue= good=+3 good=9 noequals x=1");
  REQUIRE(values.size() == 2);
  CHECK(PerfValueOf(values, "good") == 3);  // the first of a repeated label wins
  CHECK(PerfValueOf(values, "x") == 1);
}

TEST_CASE("perfdata: only the first line counts, and no bar means no perfdata",
          "[exec][perfdata]") {
  CHECK(ParsePerfData("OK - all fine").empty());
  CHECK(ParsePerfData("OK - fine\nmore | late=1").empty());
  const auto values = ParsePerfData("OK | first=1\nlong text | second=2");
  REQUIRE(values.size() == 1);
  CHECK(values[0].label == "first");
}

TEST_CASE("exec probe: check_dummy's exit codes are the four Nagios states", "[exec][plugins]") {
  REQUIRE_PLUGIN("check_dummy");
  const std::string dummy = std::string(kPlugins) + "/check_dummy";

  const TimedResult ok = RunExec(dummy + " 0 'all good'");
  CHECK(ok.result.up);
  CHECK(Number(ok.result, "state") == 0);
  CHECK(ok.result.error.empty());
  CHECK(ok.result.latency_seconds > 0);

  const TimedResult warning = RunExec(dummy + " 1 'disk filling'");
  CHECK_FALSE(warning.result.up);
  CHECK(Number(warning.result, "state") == 1);
  CHECK(warning.result.error == "WARNING (exit 1): WARNING: disk filling");

  const TimedResult critical = RunExec(dummy + " 2 'disk full'");
  CHECK_FALSE(critical.result.up);
  CHECK(Number(critical.result, "state") == 2);
  CHECK(critical.result.error == "CRITICAL (exit 2): CRITICAL: disk full");

  const TimedResult unknown = RunExec(dummy + " 3 'no idea'");
  CHECK_FALSE(unknown.result.up);
  CHECK(Number(unknown.result, "state") == 3);
}

TEST_CASE("exec probe: exit codes above 3 and signals are UNKNOWN", "[exec]") {
  const TimedResult high = RunExec("sh -c 'echo broken; exit 42'");
  CHECK_FALSE(high.result.up);
  CHECK(Number(high.result, "state") == 3);
  CHECK(high.result.error == "UNKNOWN (exit 42): broken");

  const TimedResult killed = RunExec("sh -c 'kill -9 $$'");
  CHECK_FALSE(killed.result.up);
  CHECK(Number(killed.result, "state") == 3);
  CHECK(killed.result.error.find("killed by signal 9") != std::string::npos);
}

TEST_CASE("exec probe: perfdata from the first stdout line becomes perf fields", "[exec]") {
  const TimedResult run = RunExec(
      "sh -c \"echo 'LOAD OK - fine | load1=0.5;1;2 mem=2MB rt=20ms used=12%'; echo "
      "'second line | ignored=1'\"");
  CHECK(run.result.up);
  CHECK(Number(run.result, "perf.load1") == Approx(0.5));
  CHECK(Number(run.result, "perf.mem") == 2.0 * 1024 * 1024);
  CHECK(Number(run.result, "perf.rt") == Approx(0.02));
  CHECK(Number(run.result, "perf.used") == Approx(0.12));
  CHECK(run.result.fields.count("perf.ignored") == 0);
}

TEST_CASE("exec probe: check_tcp against a real listener and a refused port", "[exec][plugins]") {
  REQUIRE_PLUGIN("check_tcp");
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  const std::string check_tcp = std::string(kPlugins) + "/check_tcp -H 127.0.0.1 -p ";

  const TimedResult up = RunExec(check_tcp + std::to_string(server.port()));
  CHECK(up.result.up);
  CHECK(Number(up.result, "state") == 0);
  const double time = Number(up.result, "perf.time");
  CHECK(time >= 0);
  CHECK(time < 1);

  RefusingPort refused;
  const TimedResult down = RunExec(check_tcp + std::to_string(refused.port()));
  CHECK_FALSE(down.result.up);
  CHECK(Number(down.result, "state") == 2);
  CHECK(down.result.error.find("Connection refused") != std::string::npos);
}

TEST_CASE("exec probe: check_http against a real server, sizes in bytes", "[exec][plugins]") {
  REQUIRE_PLUGIN("check_http");
  const std::string body(5000, 'x');
  std::atomic<int> status{200};
  ClosingHttpServer server([&](const std::string&) { return Response(status, body); });
  const std::string check_http = std::string(kPlugins) + "/check_http -I 127.0.0.1 -p " +
                                 std::to_string(server.port()) + " -u /health";

  const TimedResult up = RunExec(check_http);
  CHECK(up.result.up);
  CHECK(Number(up.result, "state") == 0);
  // check_http counts the whole response, headers included.
  CHECK(Number(up.result, "perf.size") > 5000);
  CHECK(Number(up.result, "perf.size") < 5300);
  CHECK(Number(up.result, "perf.time") < 1);
  CHECK(StartsWith(server.last_request(), "GET /health "));

  status = 500;
  const TimedResult down = RunExec(check_http);
  CHECK_FALSE(down.result.up);
  CHECK(Number(down.result, "state") == 2);
  CHECK(down.result.error.find("500") != std::string::npos);
}

TEST_CASE("exec probe: a timeout kills the whole process group and reports in time", "[exec]") {
  TempDir dir;
  const std::string pid_file = dir.path() + "/grandchild.pid";
  // The plugin starts a grandchild that ignores SIGTERM and then waits for it.
  const TimedResult run =
      RunExec("sh -c \"trap '' TERM; sleep 30 & echo \\$! > " + pid_file + "; wait\"", "300ms");
  CHECK_FALSE(run.result.up);
  CHECK(Number(run.result, "state") == 3);
  CHECK(run.result.error == "timed out after 300ms (process group killed)");
  CHECK(run.seconds < 1.5);

  std::ifstream in(pid_file);
  pid_t grandchild = 0;
  REQUIRE(in >> grandchild);
  // Killed with SIGKILL; re-parented to init, which reaps it.
  for (int i = 0; i < 100 && Alive(grandchild); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK_FALSE(Alive(grandchild));
}

TEST_CASE("exec probe: Cancel() kills a run in flight and reports nothing", "[exec]") {
  TempDir dir;
  const std::string pid_file = dir.path() + "/child.pid";
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe check]\ntype = exec\ncommand = sh -c \"echo \\$\\$ > " + pid_file +
                         "; exec sleep 30\"\ntimeout = 10s\ninterval = 1m\n")
                   ->Instantiate(context);
  bool reported = false;
  probe->Start([&](ProbeResult) { reported = true; });
  REQUIRE(loop.RunUntil([&] {
    std::error_code error;
    return std::filesystem::file_size(pid_file, error) > 0 && !error;
  }));
  std::ifstream in(pid_file);
  pid_t child = 0;
  REQUIRE(in >> child);
  CHECK(Alive(child));
  probe->Cancel();
  CHECK_FALSE(Alive(child));  // reaped synchronously
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK_FALSE(reported);
}

TEST_CASE("exec probe: a probe can run again after a run, with fresh output", "[exec]") {
  TempDir dir;
  const std::string counter = dir.path() + "/n";
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe check]\ntype = exec\ncommand = sh -c \"echo x >> " + counter +
                         "; echo \\\"OK | runs=\\$(wc -l < " + counter +
                         ")\\\"\"\ntimeout = 2s\ninterval = 1m\n")
                   ->Instantiate(context);
  CHECK(Number(RunOnce(loop, *probe).result, "perf.runs") == 1);
  CHECK(Number(RunOnce(loop, *probe).result, "perf.runs") == 2);
}

TEST_CASE("exec probe: flooding output is capped and the run still ends", "[exec]") {
  const TimedResult run = RunExec("sh -c 'head -c 5000000 /dev/zero | tr \"\\\\0\" x; exit 2'");
  CHECK_FALSE(run.result.up);
  CHECK(Number(run.result, "state") == 2);
  CHECK(run.result.error.size() < 600);
  CHECK(run.seconds < 5);
}

TEST_CASE("exec probe: stdin is /dev/null, so a plugin reading it does not hang", "[exec]") {
  const TimedResult run = RunExec("sh -c 'cat; echo OK'", "2s");
  CHECK(run.result.up);
  CHECK(run.seconds < 1.5);
}

TEST_CASE("exec probe: stderr explains a failure when stdout is silent", "[exec]") {
  const TimedResult run = RunExec("sh -c 'echo no such table >&2; exit 2'");
  CHECK(run.result.error == "CRITICAL (exit 2): no such table");
}

TEST_CASE("exec probe: a relative program path resolves against the config folder",
          "[exec][parse]") {
  TempDir dir;
  const std::string script = dir.Write("check.sh", "#!/bin/sh\necho 'OK | v=7'\n");
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe check]\ntype = exec\ncommand = ./check.sh\n", dir.path())
                   ->Instantiate(context);
  CHECK(Number(RunOnce(loop, *probe).result, "perf.v") == 7);
}

TEST_CASE("exec probe: configuration errors name file, line, section and key", "[exec][parse]") {
  CHECK(ParseError("[probe check]\ntype = exec\n") ==
        "probes.conf:1: [probe check]: missing required key \"command\"");
  CHECK(ParseError("[probe check]\ntype = exec\ncommand = echo 'oops\n")
            .find("probes.conf:3: [probe check] command: expected a command line") == 0);
  CHECK(ParseError("[probe check]\ntype = exec\ncommand = /nonexistent/check_x -w 1\n") ==
        "probes.conf:3: [probe check] command: expected an executable program, got "
        "\"/nonexistent/check_x\" (No such file or directory)");
  CHECK(ParseError("[probe check]\ntype = exec\ncommand = check_nothing_such\n") ==
        "probes.conf:3: [probe check] command: expected a program found in PATH or a path to "
        "one, got \"check_nothing_such\" (not found in PATH)");
  CHECK(ParseError("[probe check]\ntype = exec\ncommand = true\nshell = true\n")
            .find("probes.conf:4: [probe check] shell:") == 0);
}
