#include "probes/exec_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

namespace rollguard {
namespace {

constexpr std::string_view kTruncated = "[output truncated]";
constexpr size_t kReadChunk = 16 * 1024;
// Reads per wake-up: a command that floods its output cannot monopolise the loop.
constexpr int kReadsPerWakeup = 16;
// Reads after the command exited: drains what it wrote; a leftover writer cannot stall us.
constexpr int kReadsAtExit = 64;

// Variables that describe the daemon's own service setup; a child inheriting them could
// talk to systemd on the daemon's behalf or misread its stdout as the journal.
const std::set<std::string, std::less<>> kStrippedVariables = {
    "NOTIFY_SOCKET", "WATCHDOG_PID",   "WATCHDOG_USEC", "LISTEN_PID",
    "LISTEN_FDS",    "LISTEN_FDNAMES", "JOURNAL_STREAM"};

std::string ErrnoText(int error) { return std::strerror(error); }

// glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37), so call the kernel directly.
int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u)); }

std::string_view VariableName(std::string_view entry) { return entry.substr(0, entry.find('=')); }

uint64_t ToUsec(Duration d) { return d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count()) * 1000; }

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void ReleaseSource(sd_event_source*& source) {
  if (source != nullptr) sd_event_source_disable_unref(source);
  source = nullptr;
}

// The child's environment: the daemon's, minus kStrippedVariables and anything the
// request overrides, plus the request's entries.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& additions) {
  std::set<std::string, std::less<>> overridden;
  for (const std::string& entry : additions) overridden.insert(std::string(VariableName(entry)));
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view name = VariableName(*entry);
    if (kStrippedVariables.count(name) != 0 || overridden.count(name) != 0) continue;
    env.emplace_back(*entry);
  }
  env.insert(env.end(), additions.begin(), additions.end());
  return env;
}

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

std::string_view OutcomeName(ExecOutcome outcome) {
  switch (outcome) {
    case ExecOutcome::kOk:
      return "ok";
    case ExecOutcome::kFailed:
      return "failed";
    case ExecOutcome::kTimeout:
      return "timeout";
  }
  return "failed";
}

struct ExecRunner::Run {
  ExecRunner* runner = nullptr;
  uint64_t id = 0;
  ExecRequest request;
  Callback done;

  pid_t pid = -1;  // also the process group id; -1 once reaped or never started
  int pidfd = -1;
  std::array<int, 2> output_fds = {-1, -1};  // read ends, by OutputStream
  sd_event_source* exit_source = nullptr;
  std::array<sd_event_source*, 2> output_sources = {nullptr, nullptr};
  sd_event_source* timer_source = nullptr;
  sd_event_source* defer_source = nullptr;

  uint64_t started_usec = 0;
  bool timed_out = false;
  std::array<std::string, 2> partial_lines;
  size_t delivered = 0;  // bytes of output delivered, newlines included
  ExecResult result;

  void ReleaseAll() {
    ReleaseSource(exit_source);
    for (sd_event_source*& source : output_sources) ReleaseSource(source);
    ReleaseSource(timer_source);
    ReleaseSource(defer_source);
    CloseFd(pidfd);
    for (int& fd : output_fds) CloseFd(fd);
  }
};

ExecRunner::ExecRunner(sd_event* event, ExecRunnerOptions options)
    : event_(event), options_(options) {}

ExecRunner::~ExecRunner() {
  for (auto& [id, run] : runs_) {
    if (run->pid > 0) {
      KillGroup(*run, SIGKILL);
      // SIGKILL cannot be caught: this wait is short.
      while (::waitpid(run->pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    run->ReleaseAll();
  }
}

int ExecRunner::Running() const { return static_cast<int>(runs_.size()); }

uint64_t ExecRunner::NowUsec() const {
  uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  return now;
}

void ExecRunner::Start(ExecRequest request, Callback done) {
  auto owned = std::make_unique<Run>();
  Run& run = *owned;
  run.runner = this;
  run.id = next_id_++;
  run.request = std::move(request);
  run.done = std::move(done);
  run.started_usec = NowUsec();
  runs_.emplace(run.id, std::move(owned));

  if (run.request.argv.empty()) return FailLater(run, "no command to run");
  for (const std::string& entry : run.request.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return FailLater(run, "environment entry \"" + entry + "\" is not KEY=VALUE");
    }
  }
  const std::string& program = run.request.argv.front();

  std::array<std::array<int, 2>, 2> pipes{};  // [stream][read, write]
  for (size_t stream = 0; stream < pipes.size(); ++stream) {
    if (::pipe2(pipes[stream].data(), O_CLOEXEC) != 0) {
      const int error = errno;
      for (size_t i = 0; i < stream; ++i) {
        ::close(pipes[i][0]);
        ::close(pipes[i][1]);
      }
      return FailLater(run, "cannot run " + program + ": pipe: " + ErrnoText(error));
    }
    // Only our end: the child must see a blocking pipe.
    ::fcntl(pipes[stream][0], F_SETFL, O_NONBLOCK);
    run.output_fds[stream] = pipes[stream][0];
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipes[0][1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipes[1][1], STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attributes, 0);
  sigset_t signals;
  sigemptyset(&signals);
  posix_spawnattr_setsigmask(&attributes, &signals);
  sigfillset(&signals);
  posix_spawnattr_setsigdefault(&attributes, &signals);

  std::vector<std::string> argv = run.request.argv;
  std::vector<std::string> env = ChildEnvironment(run.request.env);
  std::vector<char*> argv_pointers = NullTerminated(argv);
  std::vector<char*> env_pointers = NullTerminated(env);
  pid_t pid = -1;
  // glibc reports exec failures (ENOENT, EACCES, ...) from posix_spawnp itself.
  const int spawn_error = ::posix_spawnp(&pid, program.c_str(), &actions, &attributes,
                                         argv_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(pipes[0][1]);
  ::close(pipes[1][1]);
  if (spawn_error != 0) {
    return FailLater(run, "cannot execute " + program + ": " + ErrnoText(spawn_error));
  }
  run.pid = pid;

  auto abandon = [&](const std::string& what, int error) {
    KillGroup(run, SIGKILL);
    while (::waitpid(run.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    run.pid = -1;
    FailLater(run, "cannot watch " + program + ": " + what + ": " + ErrnoText(error));
  };
  run.pidfd = PidfdOpen(pid);
  if (run.pidfd < 0) return abandon("pidfd_open", errno);
  int r = sd_event_add_io(event_, &run.exit_source, run.pidfd, EPOLLIN, &ExecRunner::OnExit, &run);
  if (r < 0) return abandon("sd_event_add_io", -r);
  for (size_t stream = 0; stream < run.output_fds.size(); ++stream) {
    r = sd_event_add_io(event_, &run.output_sources[stream], run.output_fds[stream], EPOLLIN,
                        &ExecRunner::OnOutput, &run);
    if (r < 0) return abandon("sd_event_add_io", -r);
  }
  r = sd_event_add_time_relative(event_, &run.timer_source, CLOCK_MONOTONIC,
                                 ToUsec(run.request.timeout), /*accuracy=*/1,
                                 &ExecRunner::OnTimeout, &run);
  if (r < 0) return abandon("sd_event_add_time_relative", -r);
}

void ExecRunner::FailLater(Run& run, std::string error) {
  run.ReleaseAll();
  run.result = ExecResult{};
  run.result.outcome = ExecOutcome::kFailed;
  run.result.error = std::move(error);
  const int r = sd_event_add_defer(event_, &run.defer_source, &ExecRunner::OnDeferredFailure, &run);
  // Out of memory in sd-event: report now rather than never.
  if (r < 0) Finish(run);
}

int ExecRunner::OnDeferredFailure(sd_event_source* /*source*/, void* userdata) {
  Run& run = *static_cast<Run*>(userdata);
  run.runner->Finish(run);
  return 0;
}

int ExecRunner::OnOutput(sd_event_source* source, int /*fd*/, uint32_t /*events*/, void* userdata) {
  Run& run = *static_cast<Run*>(userdata);
  const OutputStream stream =
      source == run.output_sources[0] ? OutputStream::kStdout : OutputStream::kStderr;
  run.runner->ReadOutput(run, stream, kReadsPerWakeup);
  return 0;
}

void ExecRunner::ReadOutput(Run& run, OutputStream stream, int max_reads) {
  const size_t index = static_cast<size_t>(stream);
  int& fd = run.output_fds[index];
  std::string& partial = run.partial_lines[index];
  char buffer[kReadChunk];
  for (int reads = 0; fd >= 0 && reads < max_reads; ++reads) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return;
    if (got <= 0) {  // end of stream (or an error, which ends it too)
      if (!partial.empty()) Deliver(run, stream, std::exchange(partial, std::string()));
      ReleaseSource(run.output_sources[index]);
      CloseFd(fd);
      return;
    }
    if (run.result.output_truncated) continue;  // keep the pipe flowing, drop the bytes
    std::string_view data(buffer, static_cast<size_t>(got));
    for (size_t newline; (newline = data.find('\n')) != std::string_view::npos;) {
      partial.append(data.substr(0, newline));
      data.remove_prefix(newline + 1);
      Deliver(run, stream, std::exchange(partial, std::string()));
      if (run.result.output_truncated) break;
    }
    if (run.result.output_truncated) continue;
    partial.append(data);
    // A line longer than the whole budget would only be cut: cut it now, bounding memory.
    if (run.delivered + partial.size() > options_.output_limit) {
      Deliver(run, stream, std::exchange(partial, std::string()));
    }
  }
}

void ExecRunner::Deliver(Run& run, OutputStream stream, std::string_view line) {
  if (run.result.output_truncated) return;
  const size_t remaining = options_.output_limit - run.delivered;
  if (line.size() + 1 <= remaining) {
    run.delivered += line.size() + 1;
    if (run.request.on_output_line) run.request.on_output_line(stream, line);
    return;
  }
  run.result.output_truncated = true;
  run.delivered = options_.output_limit;
  for (std::string& partial : run.partial_lines) partial.clear();
  if (!run.request.on_output_line) return;
  if (remaining > 1) run.request.on_output_line(stream, line.substr(0, remaining - 1));
  run.request.on_output_line(stream, kTruncated);
}

void ExecRunner::KillGroup(const Run& run, int signal) const {
  if (run.pid <= 0) return;
  // The group leader is not reaped before this, so its pid (= the pgid) cannot have been
  // reused. Signal the leader directly too, in case it left its group.
  ::kill(-run.pid, signal);
  ::kill(run.pid, signal);
}

int ExecRunner::OnTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
  Run& run = *static_cast<Run*>(userdata);
  ExecRunner& runner = *run.runner;
  run.timed_out = true;
  ReleaseSource(run.timer_source);
  if (runner.options_.kill_grace.count() <= 0) {
    runner.KillGroup(run, SIGKILL);
    return 0;
  }
  runner.KillGroup(run, SIGTERM);
  const int r = sd_event_add_time_relative(runner.event_, &run.timer_source, CLOCK_MONOTONIC,
                                           ToUsec(runner.options_.kill_grace), /*accuracy=*/1,
                                           &ExecRunner::OnGraceOver, &run);
  if (r < 0) runner.KillGroup(run, SIGKILL);  // no timer: no grace
  return 0;
}

int ExecRunner::OnGraceOver(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
  Run& run = *static_cast<Run*>(userdata);
  ReleaseSource(run.timer_source);
  run.runner->KillGroup(run, SIGKILL);
  return 0;
}

int ExecRunner::OnExit(sd_event_source* /*source*/, int /*fd*/, uint32_t /*events*/,
                       void* userdata) {
  Run& run = *static_cast<Run*>(userdata);
  ExecRunner& runner = *run.runner;
  // What the command wrote before exiting is in the pipes now.
  for (OutputStream stream : {OutputStream::kStdout, OutputStream::kStderr}) {
    runner.ReadOutput(run, stream, kReadsAtExit);
    std::string& partial = run.partial_lines[static_cast<size_t>(stream)];
    if (!partial.empty()) runner.Deliver(run, stream, std::exchange(partial, std::string()));
  }
  // A timed-out command's group goes with it, without waiting out the grace period.
  if (run.timed_out) runner.KillGroup(run, SIGKILL);

  siginfo_t info{};
  int r;
  do {
    r = ::waitid(P_PIDFD, static_cast<id_t>(run.pidfd), &info, WEXITED);
  } while (r < 0 && errno == EINTR);
  const int wait_error = errno;
  run.pid = -1;

  ExecResult& result = run.result;
  result.duration = std::chrono::duration_cast<Duration>(
      std::chrono::microseconds(runner.NowUsec() - run.started_usec));
  if (r < 0) {
    result.outcome = run.timed_out ? ExecOutcome::kTimeout : ExecOutcome::kFailed;
    result.error = "lost track of " + run.request.argv.front() + ": " + ErrnoText(wait_error);
  } else {
    if (info.si_code == CLD_EXITED) {
      result.exit_code = info.si_status;
    } else {
      result.signal = info.si_status;
    }
    if (run.timed_out) {
      result.outcome = ExecOutcome::kTimeout;
    } else if (result.exit_code == 0) {
      result.outcome = ExecOutcome::kOk;
    } else {
      result.outcome = ExecOutcome::kFailed;
    }
  }
  runner.Finish(run);
  return 0;
}

void ExecRunner::Finish(Run& run) {
  run.ReleaseAll();
  Callback done = std::move(run.done);
  const ExecResult result = std::move(run.result);
  runs_.erase(run.id);  // destroys `run`
  // Last: the callback may start new commands.
  if (done) done(result);
}

}  // namespace rollguard
