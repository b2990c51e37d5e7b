// The configuration: the main file (/etc/rollguard/rollguard.conf) and every rule file
// its `include` globs match, loaded, validated and compiled as one unit.
//
// LoadConfig either returns a Config that the runtime can start from, or every error it
// found (one per line, each "file:line: [section] key: what was expected"). A reload
// calls it too, and a failed load leaves the running config untouched: nothing here has
// side effects beyond reading files.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ini.h"
#include "common/result.h"
#include "common/time.h"
#include "daemon/breaker.h"
#include "daemon/fleet_breaker.h"
#include "daemon/notifier_config.h"
#include "probes/probe.h"
#include "rules/rule_set.h"

namespace rollguard {

struct DaemonSettings {
  std::vector<std::string> include_globs = {"rules.d/*.rules"};
  std::string listen = "127.0.0.1:9847";  // "off" disables the HTTP listener
  std::string state_dir = "/var/lib/rollguard";
  std::string socket = "/run/rollguard/rollguard.sock";
  bool dry_run = false;
  // How this daemon names itself to a fleet breaker's Redis (claim holders, admission
  // members): `name`, default the host name. Daemons sharing a Redis need distinct names.
  std::string name;
};

struct BreakerConfig {
  std::string name;  // "" is the default breaker ([breaker] without a name)
  BreakerPolicy policy;
  SourceLocation where;
  // scope = fleet: the history lives in this Redis, shared by every daemon (docs/fleet.md).
  std::optional<FleetSettings> fleet;
};

// One `expect_status` range of an http action: low <= status <= high.
struct ActionStatusRange {
  int low = 200;
  int high = 299;
};

// An [action NAME] section (spec §5; docs/actions.md).
struct ActionConfig {
  std::string name;
  std::string type;  // "exec", "http" or "systemd"
  Duration timeout = std::chrono::minutes(5);
  Duration cooldown = std::chrono::minutes(10);  // minimum time between two runs
  std::string breaker;                           // "" = the default breaker
  // scope = fleet: one daemon of the fleet runs it per incident (a claim in the fleet
  // breaker's Redis); the others record suppressed_fleet. Needs a fleet breaker.
  bool fleet = false;
  bool dry_run = false;  // shadow mode: decide and journal, never execute
  // Runs only within `arm` after the latest deploy of the rule's service (or of any
  // deploy when the rule has no `service` label); unset = always armed.
  std::optional<Duration> arm;
  // When set: if the rule is not back to warning or better within `verify` after the
  // action finished, "rollback did not help" is reported and `escalate` (when named) is
  // decided through the planner like any other action.
  std::optional<Duration> verify;
  std::string escalate;  // an action name, or "" for none

  // exec
  std::vector<std::string> argv;  // the command, split without a shell
  std::string user;               // run as this user (setuid/setgid/initgroups); "" = daemon's

  // http
  std::string method = "POST";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // template: {{ rule }}, {{ summary | json }}, ...
  std::vector<ActionStatusRange> expect_status = {{200, 299}};
  std::string expect_status_text = "200-299";

  // systemd
  std::string unit;
  std::string operation;  // restart | stop | start | reload

  SourceLocation where;
};

// Variables an http action's body may use: {{ NAME }} or {{ NAME | json }} (the value as a
// JSON string literal, quotes included). See docs/actions.md.
inline constexpr std::string_view kActionBodyVariables[] = {"rule",     "grade",   "previous_grade",
                                                            "reason",   "summary", "action",
                                                            "incident", "service", "dry_run"};

struct Config {
  std::string path;                     // the main config file
  std::string directory;                // its folder: relative paths resolve against it
  std::vector<std::string> rule_files;  // files the include globs matched, sorted
  DaemonSettings daemon;
  std::vector<BreakerConfig> breakers;  // always contains the default breaker ("")
  std::vector<std::shared_ptr<const ProbeConfig>> probes;
  std::vector<ActionConfig> actions;
  std::vector<NotifierConfig> notifiers;  // [notifier NAME] sections, in file order
  std::shared_ptr<RuleSet> rules;
  std::vector<std::string> warnings;  // not errors: shown by `check`, logged at start

  const ActionConfig* FindAction(std::string_view name) const;
  const BreakerConfig* FindBreaker(std::string_view name) const;
};

// Loads the main config at `path` and every included rule file. Errors: all problems
// found, joined by newlines. An unreadable main config is reported with
// `unreadable = true` so callers can map it to exit code 2.
struct ConfigError {
  std::string message;
  bool unreadable = false;
};
struct LoadedConfig {
  std::optional<Config> config;
  ConfigError error;
};
LoadedConfig LoadConfig(const std::string& path);

// Reads only the [daemon] section of the main config at `path` (the CLI uses it to find
// the control socket without loading rules). Errors as LoadConfig's.
struct LoadedDaemonSettings {
  std::optional<DaemonSettings> settings;
  ConfigError error;
};
LoadedDaemonSettings LoadDaemonSettings(const std::string& path);

// Loads rule files without a main config (for `rollguard test`): the default breaker
// applies, or the breakers of `main_config` when non-empty (its includes not followed).
LoadedConfig LoadRuleFiles(const std::vector<std::string>& rule_files,
                           const std::string& main_config);

}  // namespace rollguard
