// The `tcp` probe type (spec §3): can a TCP connection to `address` be opened in time?
//
// Keys: address ("host:port", "[ipv6]:port"; host names are resolved without blocking
// the loop). Fields: up (connected within the timeout), latency (seconds to connect,
// name resolution included). Each run opens a fresh connection and closes it at once;
// nothing is sent. Runs on the shared CurlMulti (CONNECT_ONLY), so resolution and connect
// are asynchronous and bounded by the probe's timeout.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

struct TcpAddress {
  std::string host;  // without brackets
  int port = 0;
  bool ipv6 = false;
};

// Parses "host:port" or "[v6]:port"; nullopt when malformed.
std::optional<TcpAddress> ParseTcpAddress(std::string_view text);

// Reads the tcp keys of a section whose common keys are in `spec`. Errors go to `keys`;
// nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseTcpProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
