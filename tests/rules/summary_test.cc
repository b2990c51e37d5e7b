#include <catch2/catch.hpp>

#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

// Renders `summary` after api reported json.x = x.
std::string RenderWith(const std::string& summary, FieldValue x) {
  RuleSet rules = MustCompile("[rule t]\ncritical = not api\nsummary = " + summary + "\n");
  rules.Record("api", At(0s), Up({{"json.x", x}, {"status", 200.0}}, 0.25));
  return rules.RenderSummary(0, At(0s));
}

}  // namespace

TEST_CASE("percent renders a fraction as a percentage", "[rules][summary]") {
  CHECK(RenderWith("{{ api.json.x | percent }}", 0.123) == "12.3%");
  CHECK(RenderWith("{{ api.json.x | percent }}", 0.5) == "50%");
  CHECK(RenderWith("{{ api.json.x | percent }}", 1.0 / 3) == "33.33%");
  CHECK(RenderWith("{{ api.json.x | percent }}", 0.0) == "0%");
}

TEST_CASE("duration renders seconds the way durations are written", "[rules][summary]") {
  CHECK(RenderWith("{{ api.json.x | duration }}", 1.5) == "1.5s");
  CHECK(RenderWith("{{ api.json.x | duration }}", 0.25) == "250ms");
  CHECK(RenderWith("{{ api.json.x | duration }}", 0.0123) == "12.3ms");
  CHECK(RenderWith("{{ api.json.x | duration }}", 123.0) == "2m3s");
  CHECK(RenderWith("{{ api.json.x | duration }}", 3600.0) == "1h");
  CHECK(RenderWith("{{ api.json.x | duration }}", 12.345) == "12.35s");
  CHECK(RenderWith("{{ api.json.x | duration }}", 0.0) == "0ms");
  CHECK(RenderWith("{{ api.latency | duration }}", 0.0) == "250ms");
}

TEST_CASE("number renders up to four significant digits", "[rules][summary]") {
  CHECK(RenderWith("{{ api.json.x | number }}", 1234.5678) == "1235");
  CHECK(RenderWith("{{ api.json.x | number }}", 3.14159) == "3.142");
  CHECK(RenderWith("{{ api.json.x | number }}", 0.000123456) == "0.0001235");
  CHECK(RenderWith("{{ api.json.x | number }}", 123456.7) == "123457");
  CHECK(RenderWith("{{ api.json.x | number }}", 2.0) == "2");
}

TEST_CASE("a summary renders text, strings, conditions and arithmetic", "[rules][summary]") {
  CHECK(RenderWith("state {{ api.json.x }}!", std::string("degraded")) == "state degraded!");
  CHECK(RenderWith("{{ api.status == 200 }} {{ api.status >= 500 }}", 0.0) == "true false");
  CHECK(RenderWith("{{ api.status / 100 }}", 0.0) == "2");
  CHECK(RenderWith("no templates here", 0.0) == "no templates here");
  CHECK(RenderWith("{{ \"a | b\" }}", 0.0) == "a | b");
}

TEST_CASE("values a summary cannot know render as n/a", "[rules][summary]") {
  CHECK(RenderWith("{{ api.body_bytes | number }} and {{ db.latency }}", 1.0) == "n/a and n/a");
  RuleSet rules = MustCompile("[rule t]\ncritical = not api\nsummary = {{ api.latency }}\n");
  CHECK(rules.RenderSummary(0, At(0s)) == "n/a");
  rules.Record("api", At(0s), Up({}, 0.5));
  CHECK(rules.RenderSummary(0, At(0s)) == "0.5");
  CHECK(rules.RenderSummary(0, At(21s)) == "n/a");  // stale
}

TEST_CASE("a rule without a summary renders nothing", "[rules][summary]") {
  RuleSet rules = MustCompile("[rule t]\ncritical = not api\n");
  CHECK(rules.RenderSummary(0, At(0s)).empty());
}

TEST_CASE("summary templates are checked at compile time and point into the summary",
          "[rules][summary]") {
  CHECK(ErrorOf("[rule t]\ncritical = not api\nsummary = up {{ apx | number }}\n") ==
        "test.rules:3:17: [rule t] summary: expected a declared probe (api, db, prom, svc, job), "
        "got \"apx\"\n    up {{ apx | number }}\n          ^");
  CHECK(ErrorOf("[rule t]\nsummary = {{ svc.state | percent }}\n") ==
        "test.rules:2:14: [rule t] summary: expected a number before the filter, got a string\n"
        "    {{ svc.state | percent }}\n       ^");
  CHECK(ErrorOf("[rule t]\nsummary = {{ api for 5m }}\n") ==
        "test.rules:2:18: [rule t] summary: expected an operator or the end, got for\n"
        "    {{ api for 5m }}\n           ^");
}
