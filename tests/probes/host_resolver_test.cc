// HostResolver: name lookups that never block the loop (only names /etc/hosts answers:
// tests never query a DNS server).
#include "probes/host_resolver.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/probes/probe_test_util.h"

using namespace rollguard;
using namespace rollguard::testing;

TEST_CASE("host resolver: IP literals need no lookup", "[resolver]") {
  CHECK(HostResolver::IsNumeric("127.0.0.1"));
  CHECK(HostResolver::IsNumeric("::1"));
  CHECK(HostResolver::IsNumeric("fd00::2"));
  CHECK_FALSE(HostResolver::IsNumeric("localhost"));
  CHECK_FALSE(HostResolver::IsNumeric("10.0.0"));
  CHECK_FALSE(HostResolver::IsNumeric("db.internal"));
}

TEST_CASE("host resolver: answers from the loop, never inside Start", "[resolver]") {
  EventLoop loop;
  HostResolver resolver;
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    INFO(host);
    bool called = false;
    std::vector<std::string> got;
    std::string error = "unset";
    REQUIRE(resolver.Start(loop.get(), host,
                           [&](const std::vector<std::string>& addresses, const std::string& e) {
                             called = true;
                             got = addresses;
                             error = e;
                           }));
    CHECK_FALSE(called);
    CHECK(resolver.busy());
    REQUIRE(loop.RunUntil([&] { return called; }, std::chrono::seconds(10)));
    CHECK_FALSE(resolver.busy());
    CHECK(error.empty());
    CHECK_THAT(got, Catch::VectorContains(std::string("127.0.0.1")));
  }
}

TEST_CASE("host resolver: a cancelled or destroyed lookup never calls back", "[resolver]") {
  EventLoop loop;
  bool called = false;
  {
    HostResolver resolver;
    REQUIRE(resolver.Start(
        loop.get(), "localhost",
        [&](const std::vector<std::string>&, const std::string&) { called = true; }));
    resolver.Cancel();
    CHECK_FALSE(resolver.busy());
    REQUIRE(resolver.Start(
        loop.get(), "localhost",
        [&](const std::vector<std::string>&, const std::string&) { called = true; }));
  }  // destroyed with a lookup in flight
  loop.RunFor(std::chrono::milliseconds(300));
  CHECK_FALSE(called);
}
