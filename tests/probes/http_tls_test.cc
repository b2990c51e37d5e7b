// https against a TLS server whose self-signed certificate the test makes with openssl.
#include <catch2/catch.hpp>
#include <string>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

constexpr int kCertificateDays = 30;

struct TlsTarget {
  TlsTarget() {
    MakeSelfSignedCertificate(dir, kCertificateDays);
    server = std::make_unique<TestServer>(
        [](const HttpRequest&, Connection& connection) {
          connection.Write(Response(200, "{\"tls\": true}", "", "application/json"));
        },
        TlsFiles{dir.path() + "/cert.pem", dir.path() + "/key.pem"});
  }
  TempDir dir;
  std::unique_ptr<TestServer> server;
};

}  // namespace

TEST_CASE("https probe: a self-signed certificate fails verification by default", "[http][tls]") {
  TlsTarget target;
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe api]\ntype = http\nurl = " + target.server->Url("/") + "\n")
                   ->Instantiate(context);
  const ProbeResult result = RunOnce(loop, *probe).result;
  CHECK_FALSE(result.up);
  CHECK_THAT(result.error, Catch::StartsWith("TLS certificate not trusted: "));
}

TEST_CASE("https probe: ca_file trusts the certificate and cert_expiry counts its days",
          "[http][tls]") {
  TlsTarget target;
  EventLoop loop;
  ProbeContext context(loop.get());
  // ca_file relative to the config folder.
  auto probe = MustParse("[probe api]\ntype = http\nurl = " + target.server->Url("/") +
                             "\nca_file = cert.pem\n",
                         target.dir.path())
                   ->Instantiate(context);
  for (int run = 0; run < 2; ++run) {  // the second run reuses the connection
    const ProbeResult result = RunOnce(loop, *probe).result;
    CHECK(result.up);
    CHECK(result.error.empty());
    CHECK(Number(result, "json.tls") == 1);
    CHECK(Number(result, "cert_expiry") == Approx(kCertificateDays * 86400.0).margin(300));
    if (run == 0) CHECK(result.fields.count("phase.tls") == 1);
  }
  CHECK(target.server->connections() == 1);
}

TEST_CASE("https probe: tls_verify = false accepts the certificate and still reports expiry",
          "[http][tls]") {
  TlsTarget target;
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe = MustParse("[probe api]\ntype = http\nurl = " + target.server->Url("/") +
                         "\ntls_verify = false\n")
                   ->Instantiate(context);
  const ProbeResult result = RunOnce(loop, *probe).result;
  CHECK(result.up);
  CHECK(Number(result, "cert_expiry") == Approx(kCertificateDays * 86400.0).margin(300));
}
