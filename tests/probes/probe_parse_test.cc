// [probe NAME] sections: common keys, per-type keys, secrets, and every error's exact
// "file:line: [probe NAME] key: ..." text.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"

using namespace rollguard;
using namespace rollguard::testing;

TEST_CASE("probe sections: common keys and their defaults", "[parse]") {
  auto config = MustParse("[probe api]\ntype = http\nurl = http://127.0.0.1:1/\n");
  const ProbeSpec& spec = config->spec();
  CHECK(spec.name == "api");
  CHECK(spec.type == "http");
  CHECK(spec.interval == std::chrono::seconds(15));
  CHECK(spec.timeout == std::chrono::seconds(5));
  CHECK(spec.labels.empty());
  CHECK(spec.where.ToString() == "probes.conf:1");

  auto custom = MustParse(
      "[probe db_port]\ntype = tcp\naddress = [::1]:5432\ninterval = 1m\ntimeout = 250ms\n"
      "labels = team=payments  service=api\n");
  CHECK(custom->spec().interval == std::chrono::minutes(1));
  CHECK(custom->spec().timeout == std::chrono::milliseconds(250));
  CHECK(custom->spec().labels ==
        std::map<std::string, std::string>{{"team", "payments"}, {"service", "api"}});
}

TEST_CASE("probe sections: errors name file:line, the probe, the key and what was expected",
          "[parse]") {
  const std::string http = "[probe api]\ntype = http\nurl = http://127.0.0.1:1/\n";

  CHECK(ParseError("[probe Api-1]\ntype = http\n") ==
        "probes.conf:1: [probe Api-1]: expected a probe name matching [a-z][a-z0-9_]*, got "
        "\"Api-1\"");
  CHECK(ParseError("[probe]\ntype = http\n") ==
        "probes.conf:1: [probe]: expected a probe name matching [a-z][a-z0-9_]*, got \"\"");
  CHECK(ParseError("[probe api]\nurl = http://x/\n") ==
        "probes.conf:1: [probe api]: missing required key \"type\"");
  CHECK(ParseError("[probe api]\ntype = ftp\n") ==
        "probes.conf:2: [probe api] type: expected one of http, tcp, postgres, redis, promql, "
        "exec, systemd, got \"ftp\"");
  // Every type the spec lists is built in: a bare section fails on the type's own keys.
  for (const char* type : {"postgres", "redis", "promql", "exec", "systemd"}) {
    const std::string error = ParseError("[probe db]\ntype = " + std::string(type) + "\n");
    CHECK(error.find("not available in this build") == std::string::npos);
    CHECK(error.find("probes.conf:1: [probe db]: missing") == 0);
  }
  CHECK(ParseError(http + "interval = 10 seconds\n") ==
        "probes.conf:4: [probe api] interval: expected a duration like 250ms, 5s or 1m30s, got "
        "\"10 seconds\"");
  CHECK(ParseError(http + "interval = 5s\n") ==
        "probes.conf:4: [probe api] interval: expected timeout (5s) less than interval (5s), "
        "got \"5s\"");
  CHECK(ParseError(http + "interval = 10s\ntimeout = 10s\n") ==
        "probes.conf:5: [probe api] timeout: expected timeout (10s) less than interval (10s), "
        "got \"10s\"");
  CHECK(ParseError(http + "timeout = 0s\n") ==
        "probes.conf:4: [probe api] timeout: expected a duration above 0, got \"0s\"");
  CHECK(ParseError(http + "labels = team=a oops\n") ==
        "probes.conf:4: [probe api] labels: expected key=value pairs separated by spaces (keys "
        "like [a-zA-Z_][a-zA-Z0-9_]*), got \"oops\"");
  CHECK(ParseError(http + "labels = a=1 a=2\n") ==
        "probes.conf:4: [probe api] labels: expected each label once, got \"a\" twice");
  CHECK(ParseError(http + "urll = http://x/\n") ==
        "probes.conf:4: [probe api] urll: unknown key (expected one of: type, interval, timeout, "
        "labels, url, method, header, body, expect_status, expect_body, follow_redirects, "
        "tls_verify, ca_file, bearer_token_file)");
  CHECK(ParseError(http + "url = http://127.0.0.1:2/\n") ==
        "probes.conf:4: [probe api] url: expected at most one value, got a second one (first "
        "at line 3)");
}

TEST_CASE("probe sections: http keys are checked at parse time", "[parse][http]") {
  const std::string http = "[probe api]\ntype = http\nurl = http://127.0.0.1:1/\n";
  CHECK(ParseError("[probe api]\ntype = http\n") ==
        "probes.conf:1: [probe api]: missing required key \"url\"");
  CHECK(ParseError("[probe api]\ntype = http\nurl = ftp://127.0.0.1/\n") ==
        "probes.conf:3: [probe api] url: expected an http:// or https:// URL, got "
        "\"ftp://127.0.0.1/\"");
  CHECK(ParseError("[probe api]\ntype = http\nurl = not a url\n") ==
        "probes.conf:3: [probe api] url: expected an http:// or https:// URL, got \"not a "
        "url\"");
  CHECK(ParseError(http + "method = get\n") ==
        "probes.conf:4: [probe api] method: expected an upper-case HTTP method like GET or POST, "
        "got \"get\"");
  CHECK(ParseError(http + "header = NoColon\n") ==
        "probes.conf:4: [probe api] header: expected \"Name: value\", got \"NoColon\"");
  CHECK(ParseError(http + "expect_status = 2xx\n") ==
        "probes.conf:4: [probe api] expect_status: expected status codes and ranges like "
        "200,204,300-399, got \"2xx\"");
  CHECK(ParseError(http + "expect_status = 300-200\n") ==
        "probes.conf:4: [probe api] expect_status: expected status codes and ranges like "
        "200,204,300-399, got \"300-200\"");
  CHECK_THAT(ParseError(http + "expect_body = (unclosed\n"),
             Catch::StartsWith("probes.conf:4: [probe api] expect_body: expected a POSIX "
                               "extended regular expression (") &&
                 Catch::EndsWith("), got \"(unclosed\""));
  CHECK(ParseError(http + "follow_redirects = maybe\n") ==
        "probes.conf:4: [probe api] follow_redirects: expected true or false, got \"maybe\"");
  CHECK(ParseError(http + "tls_verify = 2\n") ==
        "probes.conf:4: [probe api] tls_verify: expected true or false, got \"2\"");
  CHECK(ParseError(http + "ca_file = missing.pem\n", "/nonexistent") ==
        "probes.conf:4: [probe api] ca_file: expected a readable PEM file, got "
        "\"/nonexistent/missing.pem\" (No such file or directory)");
  CHECK(ParseError(http + "bearer_token_file = /nonexistent/token\n") ==
        "probes.conf:4: [probe api] bearer_token_file: expected a readable file, got "
        "\"/nonexistent/token\" (No such file or directory)");
}

TEST_CASE("probe sections: all errors of a section are reported together", "[parse]") {
  CHECK(ParseError("[probe api]\ntype = http\nurl = http://127.0.0.1:1/\nmethod = get\n"
                   "tls_verify = 2\nbogus = 1\n") ==
        "probes.conf:4: [probe api] method: expected an upper-case HTTP method like GET or POST, "
        "got \"get\"\n"
        "probes.conf:5: [probe api] tls_verify: expected true or false, got \"2\"\n"
        "probes.conf:6: [probe api] bogus: unknown key (expected one of: type, interval, "
        "timeout, labels, url, method, header, body, expect_status, expect_body, "
        "follow_redirects, tls_verify, ca_file, bearer_token_file)");
}

TEST_CASE("probe sections: secrets come from files and env, and never show in errors",
          "[parse][secrets]") {
  TempDir dir;
  dir.Write("empty.token", "\n");
  dir.Write("two-lines.token", "abc\nInjected: yes\n");
  setenv("ROLLGUARD_TEST_URL", "ftp://user:hunter2@127.0.0.1/", 1);
  unsetenv("ROLLGUARD_TEST_UNSET");
  const std::string http = "[probe api]\ntype = http\nurl = http://127.0.0.1:1/\n";

  const std::string url_error =
      ParseError("[probe api]\ntype = http\nurl = env:ROLLGUARD_TEST_URL\n");
  CHECK(url_error ==
        "probes.conf:3: [probe api] url: expected an http:// or https:// URL, got the value of "
        "env:ROLLGUARD_TEST_URL");
  CHECK(url_error.find("hunter2") == std::string::npos);

  CHECK(ParseError(http + "header = X-Key: env:ROLLGUARD_TEST_UNSET\n") ==
        "probes.conf:4: [probe api] header: expected environment variable "
        "\"ROLLGUARD_TEST_UNSET\" to be set, got it unset");
  CHECK(ParseError(http + "bearer_token_file = empty.token\n", dir.path()) ==
        "probes.conf:4: [probe api] bearer_token_file: expected a secret in \"" + dir.path() +
            "/empty.token\", got an empty file");
  const std::string multi_line =
      ParseError(http + "bearer_token_file = two-lines.token\n", dir.path());
  CHECK(multi_line ==
        "probes.conf:4: [probe api] bearer_token_file: expected a single-line "
        "secret in \"" +
            dir.path() + "/two-lines.token\", got several lines");
  CHECK(multi_line.find("Injected") == std::string::npos);

  setenv("ROLLGUARD_TEST_TOKEN", "from-env", 1);
  CHECK(ParseProbe(http + "bearer_token_file = env:ROLLGUARD_TEST_TOKEN\n").ok());
}

TEST_CASE("probe sections: tcp address forms", "[parse][tcp]") {
  for (const char* good : {"127.0.0.1:80", "localhost:5432", "[::1]:6379", "db-1.internal:1"}) {
    INFO(good);
    CHECK(ParseProbe(std::string("[probe db]\ntype = tcp\naddress = ") + good + "\n").ok());
  }
  CHECK(ParseError("[probe db]\ntype = tcp\n") ==
        "probes.conf:1: [probe db]: missing required key \"address\"");
  for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":80", "::1:80", "[::1]80",
                          "host/x:80", "h:8o"}) {
    INFO(bad);
    CHECK(ParseError(std::string("[probe db]\ntype = tcp\naddress = ") + bad + "\n") ==
          "probes.conf:3: [probe db] address: expected host:port or [ipv6]:port with a port from "
          "1 to 65535, got \"" +
              std::string(bad) + "\"");
  }
  CHECK(ParseError("[probe db]\ntype = tcp\naddress = 127.0.0.1:1\nurl = http://x/\n") ==
        "probes.conf:4: [probe db] url: unknown key (expected one of: type, interval, timeout, "
        "labels, address)");
}
