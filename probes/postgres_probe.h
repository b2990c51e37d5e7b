// The `postgres` probe type (spec §3): can a fresh connection run `query` in time?
//
// Keys: dsn (a libpq conninfo string or postgresql:// URI, required; it must not carry a
// password), password_file (secret: the password, never logged or quoted back), query
// (default "SELECT 1"). Fields: up (connected, authenticated and the query succeeded),
// latency (seconds from the start of the run to the last result: connect, TLS, auth and
// query), value (the first column of the first row when it is a number, or a boolean as
// 1/0; absent when there is no row, the value is NULL or not numeric — up stays 1).
//
// Each run opens a fresh connection and closes it when done, like check_pgsql: a pooled
// connection would prove only that an old backend still lives, not that the server
// accepts new clients (max_connections, pg_hba, auth, a full disk at fork). libpq's
// non-blocking API (PQconnectStartParams / PQconnectPoll, then PQsendQuery /
// PQconsumeInput / PQisBusy / PQgetResult) is driven from the daemon's sd-event loop; a
// timer abandons the run at `timeout` (PQfinish), so a hung server costs at most that.
// application_name defaults to "rollguard" (a dsn may override it). A single host *name*
// in the dsn is resolved on the loop (HostResolver) and passed to libpq as hostaddr, since
// libpq's own lookup would block; multi-host lists and PGHOST are left to libpq.
#pragma once

#include <memory>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

// Reads the postgres keys of a section whose common keys are in `spec`. Errors go to
// `keys`; nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParsePostgresProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
