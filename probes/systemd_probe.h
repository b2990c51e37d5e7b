// The `systemd` probe type (spec §3): the state of one systemd unit, read over D-Bus.
//
// Keys: unit (a unit name like nginx.service or var-lib.mount; a name without a type
// suffix means a .service, as with systemctl).
//
// Each run asks systemd on the system bus (sd-bus attached to the daemon's sd-event loop;
// asynchronous calls, never a blocking one) for the unit's LoadState and ActiveState and,
// for a .service, NRestarts. The bus connection is opened at the first run and reused;
// a broken one is dropped and reopened at the next run. The bus address is sd-bus's:
// $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket.
//
// Fields: up (1 when ActiveState is "active"), state (ActiveState as a string: active,
// reloading, inactive, failed, activating, deactivating, maintenance), restarts
// (NRestarts: how often systemd restarted the service; services only), latency.
// Errors (up 0): "cannot reach the system bus at ADDRESS: REASON", "systemd did not
// answer: ...", "unit x.service is not loaded (not-found)", "timed out after 5s".
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

// Reads the systemd keys of a section whose common keys are in `spec`. Errors go to
// `keys`; nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseSystemdProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
