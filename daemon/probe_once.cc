#include "daemon/probe_once.h"

#include <systemd/sd-event.h>

#include <cstdio>
#include <optional>

namespace rollguard {

ProbeResult RunProbeOnce(const ProbeConfig& config) {
  sd_event* event = nullptr;
  if (sd_event_new(&event) < 0) {
    ProbeResult failed;
    failed.error = "cannot create an event loop";
    return failed;
  }
  std::optional<ProbeResult> outcome;
  {
    ProbeContext context(event);
    std::unique_ptr<Probe> probe = config.Instantiate(context);
    probe->Start([&](ProbeResult result) {
      outcome = std::move(result);
      sd_event_exit(event, 0);
    });
    if (!outcome) sd_event_loop(event);
  }
  sd_event_unref(event);
  return outcome ? std::move(*outcome) : ProbeResult{};
}

std::string FormatProbeResult(const ProbeResult& result) {
  std::string out = "up " + std::string(result.up ? "1" : "0") + "\n";
  char latency[64];
  std::snprintf(latency, sizeof latency, "latency %.6f\n", result.latency_seconds);
  out += latency;
  for (const auto& [name, value] : result.fields) {
    if (name == "up" || name == "latency") continue;
    if (const double* number = std::get_if<double>(&value)) {
      char text[64];
      std::snprintf(text, sizeof text, "%.10g", *number);
      out += name + " " + text + "\n";
    } else {
      out += name + " \"" + std::get<std::string>(value) + "\"\n";
    }
  }
  if (!result.error.empty()) out += "error \"" + result.error + "\"\n";
  return out;
}

}  // namespace rollguard
