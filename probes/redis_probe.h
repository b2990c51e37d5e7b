// The `redis` probe type (spec §3): does a fresh connection answer `command` in time?
//
// Keys: address ("host:port", "[ipv6]:port", required), password_file (secret: sent with
// AUTH, never logged or quoted back), db (a database number, default 0: SELECT is sent
// when it is not 0), command (default "PING"; split into argv with shell-like quoting, no
// shell, e.g. `command = GET "deploy:last ok"`). Fields: up (connected, AUTH and SELECT
// accepted, the command answered without an error reply), latency (seconds from the
// start of the run to the command's reply), value (an integer reply, or a string/status
// reply that is a number, e.g. GET of a counter; absent otherwise — "PONG", nil, arrays).
//
// Each run is one RedisCall (probes/redis_call.h): a fresh connection that pipelines AUTH,
// SELECT and the command and closes at the reply, like check_redis: a kept connection
// would not show that the server still accepts clients (maxclients, a full accept queue).
// The call runs on the daemon's sd-event loop and is abandoned at `timeout`.
#pragma once

#include <memory>

#include "probes/probe.h"
#include "probes/redis_call.h"

namespace rollguard {

class ProbeKeys;

// Reads the redis keys of a section whose common keys are in `spec`. Errors go to
// `keys`; nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseRedisProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
