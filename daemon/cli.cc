#include "daemon/cli.h"

#include <malloc.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/control_client.h"
#include "daemon/event_log.h"
#include "daemon/probe_once.h"
#include "daemon/rule_test_runner.h"
#include "daemon/runtime.h"

namespace rollguard {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitCheckFailed = 1;
constexpr int kExitUsage = 2;

constexpr const char* kDefaultConfig = "/etc/rollguard/rollguard.conf";

constexpr const char* kUsage =
    "usage: rollguard COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  run     [--config F] [--dry-run] [--verbose]  run the daemon in the foreground\n"
    "  check   [--config F]                          validate config and rules\n"
    "  test    FILE...                               run offline rule unit tests\n"
    "  probe   NAME [--config F]                     run one probe once, print its fields\n"
    "  status  [--config F]                          grades, breakers, last actions (running "
    "daemon)\n"
    "  pause   DURATION [--config F]                 run no actions for DURATION (maintenance)\n"
    "  resume  [--config F]                          end a pause\n"
    "  breaker reset [NAME] [--config F]             close a breaker by hand (default: the "
    "unnamed one)\n"
    "  deployed [--service S] [--version V] [--config F]  record a deploy (arms `arm` actions)\n"
    "  version                                       print the version\n"
    "\n"
    "exit codes: 0 ok, 1 a check failed, 2 usage or unreadable input\n";

struct Options {
  std::string command;
  std::string config = kDefaultConfig;
  bool dry_run = false;
  bool verbose = false;
  std::optional<std::string> service;
  std::optional<std::string> version;
  std::vector<std::string> positional;
};

// Parses `--flag`, `--flag=value` and `--flag value`; false (with a message printed)
// on anything it does not know.
bool ParseOptions(int argc, char** argv, Options* options) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return false;
  }
  options->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const size_t equals = arg.find('=');
    const bool has_inline_value = arg.rfind("--", 0) == 0 && equals != std::string::npos;
    if (has_inline_value) {
      value = arg.substr(equals + 1);
      arg = arg.substr(0, equals);
    }
    if (arg == "--config" || arg == "--service" || arg == "--version") {
      if (!has_inline_value) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "rollguard: %s needs a value\n", arg.c_str());
          return false;
        }
        value = argv[++i];
      }
      if (arg == "--config") {
        options->config = value;
      } else if (options->command != "deployed") {
        std::fprintf(stderr, "rollguard %s: %s is an option of `rollguard deployed`\n",
                     options->command.c_str(), arg.c_str());
        return false;
      } else if (arg == "--service") {
        options->service = value;
      } else {
        options->version = value;
      }
    } else if (arg == "--dry-run" && !has_inline_value) {
      options->dry_run = true;
    } else if (arg == "--verbose" && !has_inline_value) {
      options->verbose = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(kExitOk);
    } else if (arg.rfind("-", 0) == 0) {
      std::fprintf(stderr, "rollguard %s: unknown option %s\n\n%s", options->command.c_str(),
                   arg.c_str(), kUsage);
      return false;
    } else {
      options->positional.push_back(arg);
    }
  }
  return true;
}

int PrintLoadError(const LoadedConfig& loaded) {
  std::fprintf(stderr, "%s\n", loaded.error.message.c_str());
  return loaded.error.unreadable ? kExitUsage : kExitCheckFailed;
}

int Check(const Options& options) {
  const LoadedConfig loaded = LoadConfig(options.config);
  if (!loaded.config) return PrintLoadError(loaded);
  const Config& config = *loaded.config;
  for (const std::string& warning : config.warnings) {
    std::fprintf(stderr, "warning: %s\n", warning.c_str());
  }
  std::printf("%s: ok (%zu rule files, %zu probes, %zu rules, %zu actions)\n",
              options.config.c_str(), config.rule_files.size(), config.probes.size(),
              config.rules->size(), config.actions.size());
  return kExitOk;
}

int ProbeOnce(const Options& options) {
  if (options.positional.size() != 1) {
    std::fprintf(stderr, "rollguard probe: expected one probe name\n\n%s", kUsage);
    return kExitUsage;
  }
  const LoadedConfig loaded = LoadConfig(options.config);
  if (!loaded.config) return PrintLoadError(loaded);
  const std::string& name = options.positional.front();
  for (const auto& probe : loaded.config->probes) {
    if (probe->spec().name != name) continue;
    const ProbeResult result = RunProbeOnce(*probe);
    std::fputs(FormatProbeResult(result).c_str(), stdout);
    return result.up ? kExitOk : kExitCheckFailed;
  }
  std::fprintf(stderr, "rollguard probe: no probe named \"%s\" in %s\n", name.c_str(),
               options.config.c_str());
  return kExitUsage;
}

int RuleTests(const Options& options) {
  if (options.positional.empty()) {
    std::fprintf(stderr, "rollguard test: expected at least one test file\n\n%s", kUsage);
    return kExitUsage;
  }
  const RuleTestReport report = RunRuleTests(options.positional);
  std::fputs(report.output.c_str(), stdout);
  std::printf("%d passed, %d failed\n", report.passed, report.failed);
  if (report.unreadable) return kExitUsage;
  return report.failed == 0 ? kExitOk : kExitCheckFailed;
}

int Run(const Options& options) {
  // Buffers of 256 KiB and more (the status document, megabytes at 10,000 probes; the
  // /metrics text) get their own mappings, returned to the system when freed. glibc's
  // default raises this threshold to the size of the largest such buffer once one is
  // freed, so later documents came from the heap, and a freed one stayed resident:
  // 89 -> 75 MiB at 10,000 probes (bench/RESULTS.md, finding 18). Set explicitly, the
  // threshold stays put.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  LoadedConfig loaded = LoadConfig(options.config);
  if (!loaded.config) return PrintLoadError(loaded);
  std::unique_ptr<EventLog> log = MakeEventLog(options.verbose);
  for (const std::string& warning : loaded.config->warnings) log->Warning(warning);
  RuntimeOptions runtime_options{options.config, options.dry_run};
  return RunDaemon(std::move(*loaded.config), runtime_options, *log);
}

// Sends one request to the running daemon; prints its message (or the error) and maps
// the outcome to an exit code: 0 done, 1 the daemon refused or cannot be reached, 2 the
// config cannot be read.
int Control(const Options& options, const nlohmann::json& request) {
  const LoadedDaemonSettings loaded = LoadDaemonSettings(options.config);
  if (!loaded.settings) {
    std::fprintf(stderr, "%s\n", loaded.error.message.c_str());
    return kExitUsage;
  }
  const std::string& socket = loaded.settings->socket;
  auto reply = SendControlRequest(socket, request.dump());
  if (!reply) {
    std::fprintf(stderr, "rollguard %s: %s\n", options.command.c_str(),
                 reply.error().message.c_str());
    return kExitCheckFailed;
  }
  const nlohmann::json parsed = nlohmann::json::parse(*reply, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    std::fprintf(stderr, "rollguard %s: unexpected reply from %s: %s\n", options.command.c_str(),
                 socket.c_str(), reply->c_str());
    return kExitCheckFailed;
  }
  if (!parsed.value("ok", false)) {
    std::fprintf(stderr, "rollguard %s: %s\n", options.command.c_str(),
                 parsed.value("error", std::string("the daemon refused")).c_str());
    return kExitCheckFailed;
  }
  if (const auto status = parsed.find("status"); status != parsed.end()) {
    auto table = FormatStatusTable(status->dump());
    if (!table) {
      std::fprintf(stderr, "rollguard status: %s\n", table.error().message.c_str());
      return kExitCheckFailed;
    }
    std::fputs(table->c_str(), stdout);
    return kExitOk;
  }
  std::printf("%s\n", parsed.value("message", std::string("ok")).c_str());
  return kExitOk;
}

int ControlCommand(const Options& options) {
  const std::vector<std::string>& args = options.positional;
  const std::string& command = options.command;
  auto usage = [&](const char* what) {
    std::fprintf(stderr, "rollguard %s: %s\n\n%s", command.c_str(), what, kUsage);
    return kExitUsage;
  };
  if (command == "status" || command == "resume") {
    if (!args.empty()) return usage("takes no arguments");
    return Control(options, {{"command", command}});
  }
  if (command == "pause") {
    if (args.size() != 1) return usage("expected one duration, e.g. `rollguard pause 30m`");
    auto duration = ParseDuration(args[0]);
    if (!duration || duration->count() <= 0) {
      return usage("expected a duration longer than 0s, such as 30m or 1h");
    }
    return Control(options, {{"command", "pause"}, {"duration", args[0]}});
  }
  if (command == "breaker") {
    if (args.empty() || args[0] != "reset" || args.size() > 2) {
      return usage("expected `rollguard breaker reset [NAME]`");
    }
    return Control(options,
                   {{"command", "breaker_reset"}, {"breaker", args.size() == 2 ? args[1] : ""}});
  }
  // deployed
  if (!args.empty()) return usage("expected only --service S and --version V");
  nlohmann::json request = {{"command", "deployed"}};
  if (options.service) request["service"] = *options.service;
  if (options.version) request["version"] = *options.version;
  return Control(options, request);
}

}  // namespace

int RunCommandLine(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, &options)) return kExitUsage;
  if (options.command == "probe") return ProbeOnce(options);
  if (options.command == "test") return RuleTests(options);
  if (options.command == "status" || options.command == "pause" || options.command == "resume" ||
      options.command == "breaker" || options.command == "deployed") {
    return ControlCommand(options);
  }
  if (!options.positional.empty()) {
    std::fprintf(stderr, "rollguard %s: unexpected argument %s\n", options.command.c_str(),
                 options.positional.front().c_str());
    return kExitUsage;
  }
  if (options.command == "run") return Run(options);
  if (options.command == "check") return Check(options);
  if (options.command == "version" || options.command == "--version") {
    std::printf("rollguard %s\n", ROLLGUARD_VERSION);
    return kExitOk;
  }
  if (options.command == "--help" || options.command == "-h" || options.command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  std::fprintf(stderr, "rollguard: unknown command \"%s\"\n\n%s", options.command.c_str(), kUsage);
  return kExitUsage;
}

}  // namespace rollguard
