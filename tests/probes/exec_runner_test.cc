#include "probes/exec_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

// A real sd-event loop, run until the test's condition holds (or a deadline passes, so a
// bug fails the test instead of hanging it).
class Loop {
 public:
  Loop() { REQUIRE(sd_event_new(&event_) >= 0); }
  ~Loop() { sd_event_unref(event_); }
  sd_event* get() const { return event_; }

  template <typename Done>
  bool RunUntil(Done done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(event_, 20'000) >= 0);
    }
    return true;
  }

 private:
  sd_event* event_ = nullptr;
};

struct Line {
  OutputStream stream;
  std::string text;
};

// Starts one command and records what comes back.
struct Recorder {
  std::optional<ExecResult> result;
  std::vector<Line> lines;

  ExecRequest Request(std::vector<std::string> argv, Duration timeout = 10s) {
    ExecRequest request;
    request.argv = std::move(argv);
    request.timeout = timeout;
    request.on_output_line = [this](OutputStream stream, std::string_view line) {
      lines.push_back(Line{stream, std::string(line)});
    };
    return request;
  }
  CommandRunner::Callback Done() {
    return [this](const ExecResult& r) { result = r; };
  }
  std::vector<std::string> Texts(OutputStream stream) const {
    std::vector<std::string> texts;
    for (const Line& line : lines) {
      if (line.stream == stream) texts.push_back(line.text);
    }
    return texts;
  }
};

ExecRequest Shell(Recorder& recorder, const std::string& script, Duration timeout = 10s) {
  return recorder.Request({"sh", "-c", script}, timeout);
}

// True once `pid` has exited: gone, or a zombie left for an init that does not reap.
bool ProcessGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z';
}

bool WaitGone(pid_t pid, std::chrono::milliseconds limit = 2s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ProcessGone(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    ::usleep(10'000);
  }
  return true;
}

}  // namespace

TEST_CASE("a command that exits 0 is ok, with its output lines", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(Shell(recorder, "echo hello; echo world"), recorder.Done());
  CHECK(runner.Running() == 1);
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));

  CHECK(recorder.result->outcome == ExecOutcome::kOk);
  CHECK(recorder.result->exit_code == 0);
  CHECK_FALSE(recorder.result->signal);
  CHECK(recorder.result->error.empty());
  CHECK(recorder.Texts(OutputStream::kStdout) == std::vector<std::string>{"hello", "world"});
  CHECK(runner.Running() == 0);
  CHECK(OutcomeName(recorder.result->outcome) == "ok");
}

TEST_CASE("a non-zero exit is failed with its exit code", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(Shell(recorder, "exit 3"), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kFailed);
  CHECK(recorder.result->exit_code == 3);
  CHECK_FALSE(recorder.result->signal);
  CHECK(OutcomeName(recorder.result->outcome) == "failed");
}

TEST_CASE("a command killed by a signal is failed with that signal", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(Shell(recorder, "kill -KILL $$"), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kFailed);
  CHECK(recorder.result->signal == SIGKILL);
  CHECK_FALSE(recorder.result->exit_code);
}

TEST_CASE("stdout and stderr lines arrive tagged, a last partial line included", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(Shell(recorder, "echo out1; echo err1 >&2; echo out2; printf partial"),
               recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.Texts(OutputStream::kStdout) ==
        std::vector<std::string>{"out1", "out2", "partial"});
  CHECK(recorder.Texts(OutputStream::kStderr) == std::vector<std::string>{"err1"});
  CHECK_FALSE(recorder.result->output_truncated);
}

TEST_CASE("output lines are delivered while the command still runs", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(Shell(recorder, "echo started; sleep 2"), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return !recorder.lines.empty(); }, 1500ms));
  CHECK(recorder.lines.front().text == "started");
  CHECK_FALSE(recorder.result.has_value());
  CHECK(runner.Running() == 1);
}

TEST_CASE("the request's environment reaches the child, the daemon's service setup does not",
          "[exec]") {
  ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  ::setenv("ROLLGUARD_TEST_INHERITED", "yes", 1);
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  ExecRequest request = Shell(recorder,
                              "echo \"$ROLLGUARD_RULE|$ROLLGUARD_GRADE|$ROLLGUARD_TEST_INHERITED|"
                              "${NOTIFY_SOCKET-unset}|${PATH:+path}\"");
  request.env = {"ROLLGUARD_RULE=api", "ROLLGUARD_GRADE=critical",
                 "ROLLGUARD_TEST_INHERITED=overridden"};
  runner.Start(std::move(request), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("ROLLGUARD_TEST_INHERITED");
  CHECK(recorder.Texts(OutputStream::kStdout) ==
        std::vector<std::string>{"api|critical|overridden|unset|path"});
}

TEST_CASE("a malformed environment entry fails the run", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  ExecRequest request = Shell(recorder, "true");
  request.env = {"NOT_AN_ASSIGNMENT"};
  runner.Start(std::move(request), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kFailed);
  CHECK_THAT(recorder.result->error, Catch::Contains("NOT_AN_ASSIGNMENT"));
}

TEST_CASE("the child reads /dev/null, gets no stray descriptors and leads its own group",
          "[exec]") {
  // A descriptor the daemon forgot to mark close-on-exec.
  const int leaked = ::open("/dev/null", O_RDONLY);
  REQUIRE(leaked >= 0);
  REQUIRE(::dup2(leaked, 100) == 100);
  ::close(leaked);
  // A signal mask the daemon set up for itself.
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGCHLD);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &blocked, &previous) == 0);

  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(
      Shell(recorder,
            "cat; "
            "if [ -e /proc/self/fd/100 ]; then echo fd100=leaked; "
            "else echo fd100=closed; fi; "
            "read -r pid comm state ppid pgrp rest < /proc/$$/stat; "
            "[ \"$pid\" = \"$pgrp\" ] && echo own-group; "
            "while read -r key value; do "
            "[ \"$key\" = SigBlk: ] && echo \"blocked=$value\"; done < /proc/$$/status; true"),
      recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  ::close(100);
  REQUIRE(::pthread_sigmask(SIG_SETMASK, &previous, nullptr) == 0);

  CHECK(recorder.result->outcome == ExecOutcome::kOk);
  CHECK(recorder.Texts(OutputStream::kStdout) ==
        std::vector<std::string>{"fd100=closed", "own-group", "blocked=0000000000000000"});
}

TEST_CASE("a missing program fails with a clear error, reported on the loop", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder absolute;
  Recorder searched;
  runner.Start(absolute.Request({"/nonexistent/rollback-api", "--now"}), absolute.Done());
  runner.Start(searched.Request({"rollguard-no-such-command"}), searched.Done());
  // Never from inside Start().
  CHECK_FALSE(absolute.result.has_value());
  CHECK(runner.Running() == 2);
  REQUIRE(loop.RunUntil([&] { return absolute.result && searched.result; }));

  CHECK(absolute.result->outcome == ExecOutcome::kFailed);
  CHECK_FALSE(absolute.result->exit_code);
  CHECK_FALSE(absolute.result->signal);
  CHECK_THAT(absolute.result->error, Catch::Contains("/nonexistent/rollback-api"));
  CHECK_THAT(absolute.result->error, Catch::Contains("No such file or directory"));
  CHECK(searched.result->outcome == ExecOutcome::kFailed);
  CHECK_THAT(searched.result->error, Catch::Contains("rollguard-no-such-command"));
  CHECK(runner.Running() == 0);
}

TEST_CASE("an empty command fails instead of crashing", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  runner.Start(recorder.Request({}), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kFailed);
  CHECK_FALSE(recorder.result->error.empty());
}

TEST_CASE("a timeout kills the whole process group", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  // The shell reports its background child, then waits on a foreground one.
  runner.Start(Shell(recorder, "sleep 100 & echo $!; sleep 100", 300ms), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }, 5s));

  CHECK(recorder.result->outcome == ExecOutcome::kTimeout);
  CHECK(OutcomeName(recorder.result->outcome) == "timeout");
  CHECK(recorder.result->signal == SIGTERM);
  CHECK(recorder.result->duration >= 300ms);
  CHECK(recorder.result->duration < 2s);  // no grace period needed: TERM was enough
  REQUIRE(recorder.Texts(OutputStream::kStdout).size() == 1);
  const pid_t grandchild = std::stoi(recorder.Texts(OutputStream::kStdout).front());
  CHECK(WaitGone(grandchild));
}

TEST_CASE("a timed-out command that ignores SIGTERM is killed after the grace period", "[exec]") {
  Loop loop;
  ExecRunnerOptions options;
  options.kill_grace = 200ms;
  ExecRunner runner(loop.get(), options);
  Recorder recorder;
  runner.Start(Shell(recorder, "trap '' TERM; sleep 100", 200ms), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }, 5s));
  CHECK(recorder.result->outcome == ExecOutcome::kTimeout);
  CHECK(recorder.result->signal == SIGKILL);
  CHECK(recorder.result->duration >= 400ms);
}

TEST_CASE("when a timed-out leader exits, what is left of its group is killed at once", "[exec]") {
  Loop loop;
  ExecRunnerOptions options;
  options.kill_grace = 30s;  // the test would time out if the runner waited for it
  ExecRunner runner(loop.get(), options);
  Recorder recorder;
  runner.Start(Shell(recorder, "(trap '' TERM; exec sleep 100) & echo $!; wait", 300ms),
               recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }, 5s));
  CHECK(recorder.result->outcome == ExecOutcome::kTimeout);
  REQUIRE(recorder.Texts(OutputStream::kStdout).size() == 1);
  const pid_t stubborn = std::stoi(recorder.Texts(OutputStream::kStdout).front());
  CHECK(WaitGone(stubborn));
}

TEST_CASE("without a grace period a timed-out command is killed at once", "[exec]") {
  Loop loop;
  ExecRunnerOptions options;
  options.kill_grace = 0ms;
  ExecRunner runner(loop.get(), options);
  Recorder recorder;
  runner.Start(Shell(recorder, "sleep 100", 0ms), recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }, 5s));
  CHECK(recorder.result->outcome == ExecOutcome::kTimeout);
  CHECK(recorder.result->signal == SIGKILL);
}

TEST_CASE("output is capped per run and the cap is announced", "[exec]") {
  Loop loop;
  ExecRunnerOptions options;
  options.output_limit = 105;
  ExecRunner runner(loop.get(), options);
  Recorder recorder;
  // 50 lines of 11 bytes: 9 fit in 105 bytes, the 10th is cut to the 5 left + a newline.
  runner.Start(Shell(recorder, "i=0; while [ $i -lt 50 ]; do echo 0123456789; i=$((i+1)); done"),
               recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kOk);
  CHECK(recorder.result->output_truncated);
  const std::vector<std::string> lines = recorder.Texts(OutputStream::kStdout);
  REQUIRE(lines.size() == 11);
  CHECK(lines[8] == "0123456789");
  CHECK(lines[9] == "01234");
  CHECK(lines[10] == "[output truncated]");
}

TEST_CASE("the default cap is 64 KiB and a flood of output never blocks the command", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder recorder;
  // 2 MB of output, a line without newline at the end too.
  runner.Start(Shell(recorder, "yes | head -n 1000000; head -c 100000 /dev/zero | tr '\\0' x"),
               recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  CHECK(recorder.result->outcome == ExecOutcome::kOk);
  CHECK(recorder.result->output_truncated);
  size_t bytes = 0;
  for (const Line& line : recorder.lines) bytes += line.text.size() + 1;
  CHECK(recorder.lines.size() == 64 * 1024 / 2 + 1);
  CHECK(bytes - recorder.lines.back().text.size() - 1 == 64 * 1024);
  CHECK(recorder.lines.back().text == "[output truncated]");
}

TEST_CASE("a line longer than the cap is cut, not buffered without bound", "[exec]") {
  Loop loop;
  ExecRunnerOptions options;
  options.output_limit = 1000;
  ExecRunner runner(loop.get(), options);
  Recorder recorder;
  runner.Start(Shell(recorder, "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo after"),
               recorder.Done());
  REQUIRE(loop.RunUntil([&] { return recorder.result.has_value(); }));
  const std::vector<std::string> lines = recorder.Texts(OutputStream::kStdout);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == std::string(999, 'x'));
  CHECK(lines[1] == "[output truncated]");
}

TEST_CASE("many commands run concurrently and each reports its own result", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  constexpr int kRuns = 40;
  std::vector<Recorder> recorders(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    runner.Start(Shell(recorders[i],
                       "sleep 0.2; echo " + std::to_string(i) + "; exit " + std::to_string(i % 7)),
                 recorders[i].Done());
  }
  CHECK(runner.Running() == kRuns);
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(loop.RunUntil([&] { return runner.Running() == 0; }));
  // Concurrent, not one after another (40 x 0.2 s).
  CHECK(std::chrono::steady_clock::now() - started < 4s);
  for (int i = 0; i < kRuns; ++i) {
    REQUIRE(recorders[i].result.has_value());
    CHECK(recorders[i].result->exit_code == i % 7);
    CHECK(recorders[i].result->outcome == (i % 7 == 0 ? ExecOutcome::kOk : ExecOutcome::kFailed));
    CHECK(recorders[i].Texts(OutputStream::kStdout) == std::vector<std::string>{std::to_string(i)});
  }
}

TEST_CASE("a completion callback may start the next command", "[exec]") {
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder first;
  Recorder second;
  runner.Start(Shell(first, "exit 0"), [&](const ExecResult& result) {
    first.result = result;
    CHECK(runner.Running() == 0);
    runner.Start(Shell(second, "exit 4"), second.Done());
  });
  REQUIRE(loop.RunUntil([&] { return second.result.has_value(); }));
  CHECK(second.result->exit_code == 4);
}

TEST_CASE("destroying the runner kills what still runs and calls no callback", "[exec]") {
  Loop loop;
  Recorder recorder;
  pid_t pid = -1;
  {
    ExecRunner runner(loop.get());
    runner.Start(Shell(recorder, "echo $$; exec sleep 100"), recorder.Done());
    REQUIRE(loop.RunUntil([&] { return !recorder.lines.empty(); }));
    pid = std::stoi(recorder.lines.front().text);
  }
  CHECK(::kill(pid, 0) == -1);  // killed and reaped: no such process
  loop.RunUntil([] { return false; }, 100ms);
  CHECK_FALSE(recorder.result.has_value());
}

TEST_CASE("finished runs leave no descriptors behind", "[exec]") {
  auto open_fds = [] {
    int count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
      ++count;
    }
    return count;
  };
  Loop loop;
  ExecRunner runner(loop.get());
  Recorder warm_up;  // sd-event creates its timer descriptors on first use
  runner.Start(Shell(warm_up, "echo x"), warm_up.Done());
  REQUIRE(loop.RunUntil([&] { return warm_up.result.has_value(); }));
  const int before = open_fds();

  std::vector<Recorder> recorders(5);
  for (Recorder& recorder : recorders) runner.Start(Shell(recorder, "echo x >&2"), recorder.Done());
  Recorder missing;
  runner.Start(missing.Request({"/nonexistent/x"}), missing.Done());
  Recorder timed_out;
  runner.Start(Shell(timed_out, "sleep 100", 50ms), timed_out.Done());
  REQUIRE(loop.RunUntil([&] { return runner.Running() == 0; }));
  CHECK(open_fds() == before);
}
