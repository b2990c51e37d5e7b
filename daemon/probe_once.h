// Runs one probe once on a private event loop: `rollguard probe NAME`.
#pragma once

#include "common/probe_result.h"
#include "probes/probe.h"

namespace rollguard {

// Blocks until the probe reports (at most its timeout plus loop latency).
ProbeResult RunProbeOnce(const ProbeConfig& config);

// Prints every field, one per line: "up 1", "latency 0.012", "status 200", ...
std::string FormatProbeResult(const ProbeResult& result);

}  // namespace rollguard
