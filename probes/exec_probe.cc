#include "probes/exec_probe.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "common/strings.h"
#include "probes/deferred_call.h"
#include "probes/exec_runner.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

constexpr size_t kMaxMessageBytes = 512;

enum NagiosState { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };

const char* StateName(int state) {
  switch (state) {
    case kOk:
      return "OK";
    case kWarning:
      return "WARNING";
    case kCritical:
      return "CRITICAL";
    default:
      return "UNKNOWN";
  }
}

std::optional<double> ParseNumber(std::string_view text, size_t* used) {
  size_t skip = 0;
  if (!text.empty() && text.front() == '+') skip = 1;
  double value = 0;
  const char* begin = text.data() + skip;
  const auto [end, error] = std::from_chars(begin, text.data() + text.size(), value);
  if (error != std::errc() || end == begin) return std::nullopt;
  *used = static_cast<size_t>(end - text.data());
  return value;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

double Scale(double value, std::string_view unit) {
  if (unit == "s") return value;
  if (unit == "ms") return value / 1e3;
  if (unit == "us") return value / 1e6;
  if (unit == "%") return value / 100;
  static constexpr std::string_view kByteUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double factor = 1;
  for (std::string_view byte_unit : kByteUnits) {
    if (EqualsIgnoreCase(unit, byte_unit)) return value * factor;
    factor *= 1024;
  }
  return value;  // "c", no unit, or a unit the guidelines do not define
}

// Reads a label at the start of `text` up to its '='; advances `text` past the '='.
std::optional<std::string> ReadLabel(std::string_view& text) {
  std::string label;
  if (!text.empty() && text.front() == '\'') {
    size_t i = 1;
    for (;; ++i) {
      if (i >= text.size()) return std::nullopt;
      if (text[i] != '\'') {
        label += text[i];
      } else if (i + 1 < text.size() && text[i + 1] == '\'') {
        label += '\'';
        ++i;
      } else {
        break;
      }
    }
    text.remove_prefix(i + 1);
    if (text.empty() || text.front() != '=') return std::nullopt;
  } else {
    const size_t equals = text.find_first_of("= \t");
    if (equals == std::string_view::npos || text[equals] != '=') return std::nullopt;
    label = std::string(text.substr(0, equals));
    text.remove_prefix(equals);
  }
  text.remove_prefix(1);  // '='
  if (label.empty()) return std::nullopt;
  return label;
}

// The plugin's first line, without perfdata, trimmed and capped for an error message.
std::string Message(std::string_view first_line) {
  std::string_view text = Trim(first_line.substr(0, first_line.find('|')));
  std::string message(text.substr(0, kMaxMessageBytes));
  if (text.size() > kMaxMessageBytes) message += "...";
  return message;
}

struct ExecOptions {
  std::vector<std::string> argv;
  Duration timeout;
};

class ExecProbe final : public Probe {
 public:
  ExecProbe(std::shared_ptr<const ExecOptions> options, sd_event* event)
      : options_(std::move(options)), event_(event) {}
  ~ExecProbe() override { Cancel(); }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    if (runner_ == nullptr) {
      ExecRunnerOptions runner_options;
      runner_options.kill_grace = Duration::zero();  // SIGKILL at the timeout: bounded runs
      runner_options.output_limit = kExecMaxOutputBytes;
      runner_ = std::make_unique<ExecRunner>(event_, runner_options);
    }
    first_stdout_.reset();
    first_stderr_.reset();
    ExecRequest request;
    request.argv = options_->argv;
    request.timeout = options_->timeout;
    request.on_output_line = [this](OutputStream stream, std::string_view line) {
      std::optional<std::string>& first =
          stream == OutputStream::kStdout ? first_stdout_ : first_stderr_;
      if (!first) first = std::string(line);
    };
    runner_->Start(std::move(request), [this](const ExecResult& exec) {
      // Delivered from a fresh loop iteration: `done` may cancel or destroy this probe,
      // which destroys the runner, and the runner must not die inside its own callback.
      ProbeResult result = BuildResult(exec);
      if (!deferred_.Schedule(event_, [this, result = std::move(result)]() mutable {
            Finish(std::move(result));
          })) {
        done_ = nullptr;  // the loop is gone: nobody is left to tell
      }
    });
  }

  void Cancel() override {
    deferred_.Cancel();
    runner_.reset();  // kills the process group of a run in flight
    done_ = nullptr;
  }

 private:
  ProbeResult BuildResult(const ExecResult& exec) const {
    ProbeResult result;
    result.latency_seconds = std::chrono::duration<double>(exec.duration).count();
    int state = kUnknown;
    const std::string program = options_->argv.front();
    const std::string first_line = first_stdout_.value_or(first_stderr_.value_or(""));
    if (exec.outcome == ExecOutcome::kTimeout) {
      result.error =
          "timed out after " + FormatDuration(options_->timeout) + " (process group killed)";
    } else if (!exec.error.empty()) {
      result.error = exec.error;
    } else if (exec.signal) {
      result.error = program + " was killed by signal " + std::to_string(*exec.signal) + " (" +
                     strsignal(*exec.signal) + ")";
    } else if (exec.exit_code) {
      const int code = *exec.exit_code;
      state = code >= kOk && code <= kUnknown ? code : kUnknown;
      if (state != kOk) {
        const std::string message = Message(first_line);
        result.error = std::string(StateName(state)) + " (exit " + std::to_string(code) +
                       "): " + (message.empty() ? "no output" : message);
      }
    }
    result.up = state == kOk && exec.outcome != ExecOutcome::kTimeout;
    result.fields["state"] = static_cast<double>(state);
    if (first_stdout_) {
      for (PerfValue& perf : ParsePerfData(*first_stdout_)) {
        result.fields.emplace("perf." + perf.label, perf.value);
      }
    }
    return result;
  }

  void Finish(ProbeResult result) {
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this probe
  }

  std::shared_ptr<const ExecOptions> options_;
  sd_event* event_;
  std::unique_ptr<ExecRunner> runner_;
  std::optional<std::string> first_stdout_;
  std::optional<std::string> first_stderr_;
  DeferredCall deferred_;
  ProbeDone done_;
};

class ExecProbeConfig final : public ProbeConfig {
 public:
  ExecProbeConfig(ProbeSpec spec, std::shared_ptr<const ExecOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<ExecProbe>(options_, context.event());
  }

 private:
  std::shared_ptr<const ExecOptions> options_;
};

// Empty when `path` names an executable regular file, else why not.
std::string ExecutableProblem(const std::string& path) {
  if (::access(path.c_str(), X_OK) != 0) return std::strerror(errno);
  return "";
}

bool FoundInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) dir = ".";
    if (ExecutableProblem(dir + "/" + name).empty()) return true;
    if (colon == std::string_view::npos) return false;
    dirs.remove_prefix(colon + 1);
  }
}

}  // namespace

std::vector<PerfValue> ParsePerfData(std::string_view first_line) {
  std::vector<PerfValue> values;
  first_line = first_line.substr(0, first_line.find('\n'));
  const size_t bar = first_line.find('|');
  if (bar == std::string_view::npos) return values;
  std::string_view text = first_line.substr(bar + 1);
  auto skip_space = [&text] {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
      text.remove_prefix(1);
    }
  };
  auto skip_item = [&text] {
    while (!text.empty() && !std::isspace(static_cast<unsigned char>(text.front()))) {
      text.remove_prefix(1);
    }
  };
  for (skip_space(); !text.empty(); skip_space()) {
    std::optional<std::string> label = ReadLabel(text);
    if (!label) {
      skip_item();
      continue;
    }
    const size_t end = std::min(text.find_first_of(" \t"), text.size());
    const std::string_view item = text.substr(0, end);
    text.remove_prefix(end);
    const std::string_view value_and_unit = item.substr(0, item.find(';'));
    size_t used = 0;
    const std::optional<double> number = ParseNumber(value_and_unit, &used);
    if (!number) continue;  // "U" (undetermined) or garbage
    const bool seen = std::any_of(values.begin(), values.end(),
                                  [&](const PerfValue& v) { return v.label == *label; });
    if (seen) continue;
    values.push_back({std::move(*label), Scale(*number, value_and_unit.substr(used))});
  }
  return values;
}

std::shared_ptr<const ProbeConfig> ParseExecProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<ExecOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* command = keys.Required("command")) {
    SplitCommandResult split = SplitCommandLine(command->value);
    if (!split.error.empty()) {
      keys.ErrorAt(*command, "expected a command line (argv, shell-like quoting, no shell): " +
                                 split.error + ", got " + Quoted(command->value));
    } else {
      std::string& program = split.argv.front();
      if (program.find('/') != std::string::npos) {
        program = keys.Path(program);
        const std::string problem = ExecutableProblem(program);
        if (!problem.empty()) {
          keys.ErrorAt(*command, "expected an executable program, got " + Quoted(program) + " (" +
                                     problem + ")");
        }
      } else if (!FoundInPath(program)) {
        keys.ErrorAt(*command, "expected a program found in PATH or a path to one, got " +
                                   Quoted(program) + " (not found in PATH)");
      }
      options->argv = std::move(split.argv);
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<ExecProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
