// Runtime: the daemon's event loop and everything it drives.
//
// One sd-event loop owns all IO: probe timers, probe transfers (libcurl multi on the same
// loop), action child processes, signals, the systemd watchdog. Nothing in it blocks.
// The loop reads the clock and passes `now` into the pure parts (rules, breaker,
// planner). On every probe result the rules that read the probe are evaluated at once;
// each rule is evaluated again at the moment its outcome says time alone may change it
// (a `for` elapsing, staleness; one timer for all rules), and a one-second sweep
// evaluates any rule nothing else has touched, as a safety net.
//
// Signals: SIGTERM/SIGINT stop (STOPPING=1), SIGHUP reloads (RELOADING=1): a config that
// fails to load is rejected whole and the running one continues.
#pragma once

#include <memory>
#include <string>

#include "daemon/config.h"
#include "daemon/event_log.h"

namespace rollguard {

struct RuntimeOptions {
  std::string config_path;
  bool force_dry_run = false;  // --dry-run: evaluate and notify, never run actions
};

// Runs the daemon until it is told to stop. Returns the process exit code: 0 after a
// clean stop, 1 when the state directory cannot be used.
int RunDaemon(Config config, const RuntimeOptions& options, EventLog& log);

}  // namespace rollguard
