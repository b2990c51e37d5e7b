// The Probe interface: one run of one check, asynchronous, on the daemon's event loop.
//
// A probe section ([probe NAME]) is parsed once into a ProbeConfig, which validates every
// key and can be checked without any IO beyond reading secret files (`rollguard check`).
// The runtime then instantiates a Probe from it on an event loop. Every probe type lives
// in its own file (http_probe.cc, tcp_probe.cc, ...) behind this interface; libcurl,
// libpq, hiredis and sd-bus are used only inside this folder.
//
// Contract of a run: Start() returns at once; `done` is called exactly once, from the
// event loop, no later than the probe's timeout plus loop latency. A failed check is a
// result with up = false and an error text, never an exception. A slow or hostile target
// costs at most the timeout and never blocks another probe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/ini.h"
#include "common/probe_result.h"
#include "common/result.h"
#include "common/time.h"
#include "probes/prometheus_server.h"

typedef struct sd_event sd_event;  // NOLINT: matches <systemd/sd-event.h>

namespace rollguard {

class CurlMulti;
class PlainHttp;

// Keys every probe type has (spec §3).
struct ProbeSpec {
  std::string name;
  std::string type;
  Duration interval = std::chrono::seconds(15);
  Duration timeout = std::chrono::seconds(5);  // REQUIRES: timeout < interval
  std::map<std::string, std::string> labels;
  SourceLocation where;
};

// Shared by all probes on one event loop: the loop, the one libcurl multi handle that all
// libcurl probes share and the plain HTTP client (so connections are reused across runs).
// Both are made on first use: libcurl's global initialisation brings up OpenSSL (~2 MiB
// resident), which a configuration without a libcurl probe never needs.
// REQUIRES: every Probe instantiated from a context is idle (finished or Cancel()ed) or
// destroyed before the context is destroyed; probes keep a reference to curl() and
// plain_http().
class ProbeContext {
 public:
  // `event` must outlive the context.
  explicit ProbeContext(sd_event* event);
  ~ProbeContext();
  ProbeContext(const ProbeContext&) = delete;
  ProbeContext& operator=(const ProbeContext&) = delete;

  sd_event* event() const { return event_; }
  CurlMulti& curl();
  PlainHttp& plain_http();

 private:
  sd_event* event_;
  std::unique_ptr<CurlMulti> curl_;
  std::unique_ptr<PlainHttp> plain_http_;
};

using ProbeDone = std::function<void(ProbeResult)>;

class Probe {
 public:
  virtual ~Probe() = default;
  // Starts one run; see the contract above. REQUIRES: no run of this probe in flight.
  virtual void Start(ProbeDone done) = 0;
  // Abandons an in-flight run; `done` will not be called. No-op when idle.
  virtual void Cancel() = 0;
};

class ProbeConfig {
 public:
  virtual ~ProbeConfig() = default;
  const ProbeSpec& spec() const { return spec_; }
  virtual std::unique_ptr<Probe> Instantiate(ProbeContext& context) const = 0;

 protected:
  explicit ProbeConfig(ProbeSpec spec) : spec_(std::move(spec)) {}

 private:
  ProbeSpec spec_;
};

// Context for parsing: relative paths (ca_file, *_file secrets) resolve against
// `base_directory` (the folder of the main config). `prometheus_servers` are the
// configured [prometheus] sections, which promql probes name with `server`.
struct ProbeParseContext {
  std::string base_directory;
  std::vector<PrometheusServer> prometheus_servers = {};
};

// Parses a [probe NAME] section: common keys plus the type's own. Unknown keys, missing
// required keys, bad values, timeout >= interval: errors of the form
// "file:line: [probe NAME] key: expected ..., got ...".
Result<std::shared_ptr<const ProbeConfig>> ParseProbeSection(const IniSection& section,
                                                             const ProbeParseContext& context);

}  // namespace rollguard
