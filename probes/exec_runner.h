// ExecRunner: runs commands on the sd-event loop without ever blocking it: exec actions
// (spec §5, used by daemon/responder) and exec probes (spec §3, probes/exec_probe). It
// lives in probes/ because daemon/ depends on probes/, never the other way round.
//
// Each command runs
//   * in its own process group (the child's pid is its pgid), so a timeout kills
//     everything it started, not just the first process;
//   * with stdin from /dev/null and stdout/stderr on pipes the loop reads line by line;
//     every other descriptor is closed (descriptors are O_CLOEXEC and the child also
//     closes everything from 3 up before exec);
//   * with an empty signal mask and default signal dispositions, whatever the daemon
//     blocks or ignores;
//   * with the daemon's environment plus the request's KEY=VALUE additions (which win),
//     minus the variables that describe the daemon's own service setup: NOTIFY_SOCKET,
//     WATCHDOG_PID, WATCHDOG_USEC, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, JOURNAL_STREAM.
//     argv[0] without a '/' is searched in the daemon's PATH.
//
// Completion is watched with a pidfd (pidfd_open + an sd-event io source), not with
// SIGCHLD: it needs no process-wide signal setup and leaves the child unreaped until the
// runner has decided what to do with its group. The one requirement on the process:
// SIGCHLD must not be ignored (SIG_IGN or SA_NOCLDWAIT would auto-reap the children).
// Blocking SIGCHLD, as sd_event_add_child users must, is fine.
//
// Timeout: the whole group gets SIGTERM; SIGKILL follows when the group leader exits or
// after a grace period (2 s by default), whichever comes first, so nothing outlives a
// timed-out command. The result is kTimeout whatever the exit status.
//
// Output: on_output_line gets each line (without its newline) as it arrives, stdout and
// stderr tagged, at most `output_limit` bytes per run (64 KiB by default, newlines
// included); the rest is read and dropped and a last line "[output truncated]" says so.
// A final line without a newline is delivered when its stream closes or the command
// exits. Output that processes left behind write after the command exited is not read.
//
// Callbacks run on the loop, never inside Start(), also when the command cannot be
// started. Not thread-safe: use from the loop's thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

enum class OutputStream { kStdout, kStderr };

struct ExecRequest {
  std::vector<std::string> argv;  // already split; argv[0] is the program
  std::vector<std::string> env;   // KEY=VALUE, added to the daemon's environment
  Duration timeout = std::chrono::minutes(5);
  // Optional. Called on the loop for each line of output.
  std::function<void(OutputStream stream, std::string_view line)> on_output_line;
};

enum class ExecOutcome {
  kOk,       // exited with status 0
  kFailed,   // exited non-zero, was killed by a signal, or could not be started
  kTimeout,  // ran longer than its timeout and was killed
};

// "ok" / "failed" / "timeout", as in actions.jsonl and metrics.
std::string_view OutcomeName(ExecOutcome outcome);

struct ExecResult {
  ExecOutcome outcome = ExecOutcome::kFailed;
  std::optional<int> exit_code;  // set when the command exited
  std::optional<int> signal;     // set when a signal killed it (e.g. SIGTERM on timeout)
  Duration duration{0};          // start to exit, on the loop's monotonic clock
  std::string error;             // set when it could not be started or watched
  bool output_truncated = false;
};

// The narrow interface the responder uses; tests substitute a recording fake.
class CommandRunner {
 public:
  using Callback = std::function<void(const ExecResult& result)>;
  virtual ~CommandRunner() = default;

  // Starts `request`; `done` is called exactly once, later, on the loop.
  virtual void Start(ExecRequest request, Callback done) = 0;

  // Commands started whose `done` has not been called yet.
  virtual int Running() const = 0;
};

struct ExecRunnerOptions {
  Duration kill_grace = std::chrono::seconds(2);  // SIGTERM -> SIGKILL on timeout
  size_t output_limit = 64 * 1024;                // bytes of output delivered per run
};

class ExecRunner final : public CommandRunner {
 public:
  // `event` must outlive the runner.
  explicit ExecRunner(sd_event* event, ExecRunnerOptions options = {});

  // Kills (SIGKILL) the process group of every command still running and reaps it;
  // their callbacks are not called. Must not be called from inside a callback.
  ~ExecRunner() override;

  ExecRunner(const ExecRunner&) = delete;
  ExecRunner& operator=(const ExecRunner&) = delete;

  // See CommandRunner. An empty argv, a malformed env entry, a program that does not
  // exist or cannot be executed: kFailed with `error` saying so. Callbacks may call
  // Start() again; on_output_line must not destroy the runner.
  void Start(ExecRequest request, Callback done) override;
  int Running() const override;

 private:
  struct Run;

  // sd-event handlers; userdata is the Run.
  static int OnExit(sd_event_source* source, int fd, uint32_t events, void* userdata);
  static int OnOutput(sd_event_source* source, int fd, uint32_t events, void* userdata);
  static int OnTimeout(sd_event_source* source, uint64_t usec, void* userdata);
  static int OnGraceOver(sd_event_source* source, uint64_t usec, void* userdata);
  static int OnDeferredFailure(sd_event_source* source, void* userdata);

  void FailLater(Run& run, std::string error);
  void ReadOutput(Run& run, OutputStream stream, int max_reads);
  void Deliver(Run& run, OutputStream stream, std::string_view line);
  void KillGroup(const Run& run, int signal) const;
  void Finish(Run& run);  // releases the run, then calls its callback
  uint64_t NowUsec() const;

  sd_event* event_;
  ExecRunnerOptions options_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Run>> runs_;
};

}  // namespace rollguard
