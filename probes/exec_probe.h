// The `exec` probe type (spec §3): runs a Nagios-style plugin and reads its verdict.
//
// Keys: command (argv with shell-like quoting, split by SplitCommandLine; no shell is
// involved, so no globbing, pipes or variable expansion). A program named with a '/'
// that is not absolute resolves against the config folder, as every other path does; a
// bare name is searched in PATH. Both are checked when the config is loaded.
//
// Each run starts the command through ExecRunner: its own process group, stdin from
// /dev/null, at most kExecMaxOutputBytes of output read, the daemon's service variables
// (NOTIFY_SOCKET, ...) removed from its environment. At the probe's timeout the whole
// group is killed with SIGKILL at once (plugins that trap SIGTERM cannot stretch a run),
// so a run reports no later than its timeout.
//
// Fields (the Nagios plugin convention):
//   state    the exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Any other exit code,
//            death by a signal, a timeout and a program that cannot be started are all
//            UNKNOWN (3), as Nagios and Icinga treat them.
//   up       1 when state is 0.
//   latency  seconds from start to exit.
//   perf.<label>  each value of the perfdata on the first line of stdout (after '|'),
//            scaled to base units (see ParsePerfData). Labels are kept verbatim.
// When up is 0, `error` says what happened: "CRITICAL (exit 2): <first line>", "timed out
// after 5s", "killed by signal 9", "cannot execute ...". The first line is the plugin's
// text before '|' (stderr's first line when stdout is empty), capped at 512 bytes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

inline constexpr size_t kExecMaxOutputBytes = 64 * 1024;

// One value of Nagios performance data, already scaled.
struct PerfValue {
  std::string label;
  double value = 0;
};

// Parses the perfdata of a plugin's FIRST output line: everything after its first '|',
// as space-separated 'label'=value[UOM][;warn[;crit[;min[;max]]]] items (Nagios Plugin
// Development Guidelines §2.6). Labels may be single-quoted (then they may hold spaces and
// '=', and '' stands for one quote). Units are scaled to base units:
//   s, ms, us         -> seconds
//   B, KB, MB, GB, TB -> bytes, 1024-based as check_disk/check_swap compute them; the
//                        unit letters are matched case-insensitively (kB, Mb, ...)
//   %                 -> a fraction, 45% -> 0.45, the way rule literals read percents
//                        (spec §1), so `disk.perf.root > 90%` means what it says
//   c, no unit, any other unit -> the number as written
// Items whose value is not a number (e.g. "U", undetermined) or that do not parse are
// skipped; a repeated label keeps its first value. Never fails.
std::vector<PerfValue> ParsePerfData(std::string_view first_line);

// Reads the exec keys of a section whose common keys are in `spec`. Errors go to `keys`;
// nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseExecProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
