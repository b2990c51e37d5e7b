#include <catch2/catch.hpp>

#include "tests/rules/rules_test_support.h"

using namespace rollguard;
using namespace rollguard::testing;

TEST_CASE("compile errors name file:line:column, the rule and key, with a caret",
          "[rules][compile]") {
  const struct {
    const char* condition;
    const char* error;
  } cases[] = {
      {"apx.latency > 3",
       "test.rules:2:12: [rule t] critical: expected a declared probe (api, db, prom, svc, job), "
       "got \"apx\"\n    apx.latency > 3\n    ^"},
      {"api.lat > 3",
       "test.rules:2:16: [rule t] critical: expected a field of http probe api (up, latency, "
       "status, body_bytes, cert_expiry, json.<path>, phase.<path>), got \"lat\"\n"
       "    api.lat > 3\n        ^"},
      {"db.status > 3",
       "test.rules:2:15: [rule t] critical: expected a field of postgres probe db (up, latency, "
       "value), got \"status\"\n    db.status > 3\n       ^"},
      {"svc.state < \"b\"",
       "test.rules:2:12: [rule t] critical: expected a number on the left of < (strings compare "
       "only with == and !=), got a string\n    svc.state < \"b\"\n    ^"},
      {"1 + \"a\" > 0",
       "test.rules:2:16: [rule t] critical: expected a number on the right of +, got a string\n"
       "    1 + \"a\" > 0\n        ^"},
      {"svc.state == 1",
       "test.rules:2:25: [rule t] critical: expected a string on the right of == (as on its "
       "left), got a number\n    svc.state == 1\n                 ^"},
      {"svc.state",
       "test.rules:2:12: [rule t] critical: expected a condition (a comparison, or a number that "
       "is true when non-zero), got a string\n    svc.state\n    ^"},
      {"not svc.state",
       "test.rules:2:16: [rule t] critical: expected a condition after not, got a string\n"
       "    not svc.state\n        ^"},
      {"api and \"x\"",
       "test.rules:2:20: [rule t] critical: expected a condition on the right of and, got a "
       "string\n    api and \"x\"\n            ^"},
      {"(1 < 2) + 1 > 0",
       "test.rules:2:12: [rule t] critical: expected a number on the left of +, got a "
       "condition\n    (1 < 2) + 1 > 0\n    ^"},
      {"avg(svc.state, 5m) > 1",
       "test.rules:2:16: [rule t] critical: expected a numeric field as the argument of avg(), "
       "got the string field \"svc.state\"\n    avg(svc.state, 5m) > 1\n        ^"},
      {"avg(api.latency * 2, 5m) > 1",
       "test.rules:2:16: [rule t] critical: expected a probe or probe field like api.latency as "
       "the argument of avg(), got \"api.latency * 2\"\n    avg(api.latency * 2, 5m) > 1\n"
       "        ^"},
      {"ratio(api.status >= 500 and db.latency > 1, 5m) > 0.1",
       "test.rules:2:40: [rule t] critical: expected a condition on one probe inside ratio() (it "
       "reads api), got a reference to db\n"
       "    ratio(api.status >= 500 and db.latency > 1, 5m) > 0.1\n"
       "                                ^"},
      {"ratio(avg(api.latency, 1m) > 1, 5m) > 0.1",
       "test.rules:2:18: [rule t] critical: expected a condition on one probe's fields inside "
       "ratio(), got avg()\n    ratio(avg(api.latency, 1m) > 1, 5m) > 0.1\n          ^"},
      {"ratio(1 > 0, 5m) > 0.1",
       "test.rules:2:18: [rule t] critical: expected a condition that reads a probe inside "
       "ratio(), got \"1 > 0\"\n    ratio(1 > 0, 5m) > 0.1\n          ^"},
      {"age(api.latency) > 1",
       "test.rules:2:16: [rule t] critical: expected a probe name as the argument of age(), got "
       "\"api.latency\"\n    age(api.latency) > 1\n        ^"},
      {"absent(1)",
       "test.rules:2:19: [rule t] critical: expected a probe or probe field like api.latency as "
       "the argument of absent(), got \"1\"\n    absent(1)\n           ^"},
  };
  for (const auto& c : cases) {
    INFO(c.condition);
    CHECK(ErrorOf(std::string("[rule t]\ncritical = ") + c.condition + "\n") == c.error);
  }
}

TEST_CASE("unknown and cyclic dependencies are compile errors at the depends line",
          "[rules][compile]") {
  CHECK(ErrorOf("[rule a]\ncritical = not api\ndepends = nope\n") ==
        "test.rules:3: [rule a] depends: expected a defined rule, got \"nope\"");
  CHECK(ErrorOf("[rule a]\ndepends = b\n\n[rule b]\ndepends = c\n\n[rule c]\ndepends = a\n") ==
        "test.rules:8: [rule c] depends: expected no dependency cycle, got a -> b -> c -> a");
}

TEST_CASE("a duplicate rule name is an error that points at both definitions", "[rules][compile]") {
  CHECK(ErrorOf("[rule a]\ncritical = not api\n\n[rule a]\ncritical = not db\n") ==
        "test.rules:4: [rule a]: expected a unique rule name, got a again (first defined at "
        "test.rules:1)");
}

TEST_CASE("a probe of an unknown type is an error at its declaration", "[rules][compile]") {
  std::vector<ProbeDeclaration> probes = StandardProbes();
  probes.push_back({"mq", "amqp", std::chrono::seconds(10), {"probes.conf", 30}});
  CHECK(ErrorOf("[rule a]\ncritical = not api\n", probes) ==
        "probes.conf:30: [probe mq] type: expected one of http, tcp, postgres, redis, promql, "
        "exec, systemd, got \"amqp\"");
}

TEST_CASE("all compile errors are reported, one per line", "[rules][compile]") {
  const std::string message =
      ErrorOf("[rule a]\ncritical = nope\nwarning = api.nope\n\n[rule b]\ndepends = zz\n");
  CHECK_THAT(message, Catch::StartsWith("test.rules:2:12: [rule a] critical:"));
  CHECK_THAT(message, Catch::Contains("\ntest.rules:3:15: [rule a] warning:"));
  CHECK_THAT(message, Catch::Contains("\ntest.rules:6: [rule b] depends:"));
}

TEST_CASE("warnings flag probes no rule reads and rules with no condition", "[rules][compile]") {
  const RuleSet rules = MustCompile("[rule a]\ncritical = not api\n\n[rule b]\nsummary = hi\n");
  const std::vector<std::string>& warnings = rules.Warnings();
  CHECK(warnings == std::vector<std::string>{
                        "probes.conf:5: [probe db] no rule condition reads this probe",
                        "probes.conf:9: [probe prom] no rule condition reads this probe",
                        "probes.conf:13: [probe svc] no rule condition reads this probe",
                        "probes.conf:17: [probe job] no rule condition reads this probe",
                        "test.rules:4: [rule b] has no condition (failure, critical, warning or "
                        "good), so it is always excellent",
                    });
}

TEST_CASE("a rule set finds rules by name and keeps their definitions", "[rules][compile]") {
  const RuleSet rules = MustCompile("[rule a]\ncritical = not api\n\n[rule b]\nwarning = not db\n");
  CHECK(rules.size() == 2);
  CHECK(rules.Find("b") == std::optional<size_t>(1));
  CHECK_FALSE(rules.Find("c").has_value());
  CHECK(rules.definition(1).name == "b");
  CHECK(rules.ProbesRead(0) == std::vector<std::string>{"api"});
}

TEST_CASE("the example from the rules reference compiles", "[rules][compile]") {
  std::vector<ProbeDeclaration> probes = StandardProbes();
  probes.push_back({"worker", "systemd", std::chrono::seconds(10), {"probes.conf", 40}});
  const RuleSet rules = MustCompile(R"([rule api]
failure  = not api for 30s
critical = ratio(api.status >= 500, 5m) > 10% for 5m
critical = p95(api.latency, 5m) > 5s          ; repeatable: conditions are OR'ed
warning  = api.latency > 3s
good     = api.latency > 200ms
recover  = 2m
depends  = db
on_critical = rollback_api
on_failure  = rollback_api
summary  = API 5xx {{ ratio(api.status >= 500, 5m) | percent }}, p95 {{ p95(api.latency, 5m) | duration }}
labels   = team=payments service=api
notify   = slack
no_data  = hold

[rule db]
critical = not db

[rule api_errors]
critical = ratio(api.status >= 500, 5m) > 10%
warning  = changes(worker.state, 10m) > 4
)",
                                    probes);
  CHECK(rules.size() == 3);
}

TEST_CASE("a probe declared twice is an error at the second declaration", "[rules][compile]") {
  std::vector<ProbeDeclaration> probes = StandardProbes();
  probes.push_back({"api", "tcp", std::chrono::seconds(10), {"probes.conf", 50}});
  CHECK(ErrorOf("[rule a]\ncritical = not api\n", probes) ==
        "probes.conf:50: [probe api]: expected a unique probe name, got api again");
}
