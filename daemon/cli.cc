#include "daemon/cli.h"

#include <cstdio>
#include <string>
#include <vector>

#include "daemon/config.h"
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
    "  version                                       print the version\n"
    "\n"
    "exit codes: 0 ok, 1 a check failed, 2 usage or unreadable input\n";

struct Options {
  std::string command;
  std::string config = kDefaultConfig;
  bool dry_run = false;
  bool verbose = false;
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
    if (arg == "--config") {
      if (!has_inline_value) {
        if (i + 1 >= argc) {
          std::fputs("rollguard: --config needs a file\n", stderr);
          return false;
        }
        value = argv[++i];
      }
      options->config = value;
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
  LoadedConfig loaded = LoadConfig(options.config);
  if (!loaded.config) return PrintLoadError(loaded);
  std::unique_ptr<EventLog> log = MakeEventLog(options.verbose);
  for (const std::string& warning : loaded.config->warnings) log->Warning(warning);
  RuntimeOptions runtime_options{options.config, options.dry_run};
  return RunDaemon(std::move(*loaded.config), runtime_options, *log);
}

}  // namespace

int RunCommandLine(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, &options)) return kExitUsage;
  if (options.command == "probe") return ProbeOnce(options);
  if (options.command == "test") return RuleTests(options);
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
