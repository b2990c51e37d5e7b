// The tcp probe: connect, refuse, time out — on loopback only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

TimedResult RunTcp(const std::string& address, const std::string& timeout = "2s") {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe =
      MustParse("[probe port]\ntype = tcp\naddress = " + address + "\ntimeout = " + timeout + "\n")
          ->Instantiate(context);
  return RunOnce(loop, *probe);
}

}  // namespace

TEST_CASE("tcp probe: a listening port is up, with the connect latency", "[tcp]") {
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  const TimedResult run = RunTcp("127.0.0.1:" + std::to_string(server.port()));
  CHECK(run.result.up);
  CHECK(run.result.error.empty());
  CHECK(run.result.latency_seconds > 0);
  CHECK(run.result.latency_seconds < 1);
  CHECK(run.result.fields.empty());
}

TEST_CASE("tcp probe: every run opens a fresh connection and sends nothing", "[tcp]") {
  TestServer server([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe =
      MustParse("[probe port]\ntype = tcp\naddress = 127.0.0.1:" + std::to_string(server.port()) +
                "\n")
          ->Instantiate(context);
  for (int i = 0; i < 3; ++i) CHECK(RunOnce(loop, *probe).result.up);
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK(server.connections() == 3);
  CHECK(server.requests().empty());
}

TEST_CASE("tcp probe: a closed port is 'connection refused'", "[tcp]") {
  RefusingPort port;
  const TimedResult run = RunTcp("127.0.0.1:" + std::to_string(port.port()));
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "connection refused");
  CHECK(run.seconds < 1.0);
}

TEST_CASE("tcp probe: IPv6 loopback in brackets", "[tcp]") {
  const int listener = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener, 16) != 0) {
    ::close(listener);
    WARN("no IPv6 loopback here; skipped");
    return;
  }
  socklen_t length = sizeof(address);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const TimedResult run = RunTcp("[::1]:" + std::to_string(ntohs(address.sin6_port)));
  ::close(listener);
  CHECK(run.result.up);
}

TEST_CASE("tcp probe: a listener whose accept queue is full costs the timeout", "[tcp]") {
  // A backlog of 0 and no accept(): once the queue holds a connection, the kernel drops
  // further SYNs, so a connect hangs — the loopback stand-in for a black-holed host.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener, 0) == 0);
  socklen_t length = sizeof(address);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {
    const int filler = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::connect(filler, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    fillers.push_back(filler);
  }
  ::usleep(100 * 1000);
  const TimedResult run = RunTcp("127.0.0.1:" + std::to_string(ntohs(address.sin_port)), "1s");
  for (int filler : fillers) ::close(filler);
  ::close(listener);
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error == "timed out after 1s while connecting");
  CHECK(run.seconds >= 0.9);
  CHECK(run.seconds < 2.0);
}
