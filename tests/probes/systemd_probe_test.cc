// The systemd probe: the clear error when no system bus is reachable, a real D-Bus daemon
// without systemd on it, and — where this machine runs systemd — a real unit.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

// Sets an environment variable for one scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TimedResult RunUnit(const std::string& unit, const std::string& timeout = "2s") {
  EventLoop loop;
  ProbeContext context(loop.get());
  auto probe =
      MustParse("[probe unit]\ntype = systemd\nunit = " + unit + "\ntimeout = " + timeout + "\n")
          ->Instantiate(context);
  return RunOnce(loop, *probe);
}

}  // namespace

TEST_CASE("systemd probe: no system bus is a clear error naming the address", "[systemd]") {
  TempDir dir;
  const std::string address = "unix:path=" + dir.path() + "/no_bus_here";
  ScopedEnv env("DBUS_SYSTEM_BUS_ADDRESS", address);
  const TimedResult run = RunUnit("nginx.service");
  CHECK_FALSE(run.result.up);
  CHECK(run.result.error ==
        "cannot reach the system bus at " + address + ": No such file or directory");
  CHECK(run.result.fields.empty());
  CHECK(run.seconds < 1);
}

TEST_CASE("systemd probe: a real D-Bus daemon without systemd on it", "[systemd]") {
  if (::access("/usr/bin/dbus-daemon", X_OK) != 0) {
    WARN("skipped: /usr/bin/dbus-daemon is missing (Debian package dbus-daemon)");
    return;
  }
  TempDir dir;
  const std::string socket = dir.path() + "/bus";
  // A bus of its own, with no service activation: nothing will ever own systemd1 on it.
  const std::string config = dir.Write(
      "bus.conf",
      "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
      " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
      "<busconfig><type>custom</type><listen>unix:path=" +
          socket +
          "</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow "
          "send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow "
          "own=\"*\"/></policy></busconfig>\n");
  const std::string config_flag = "--config-file=" + config;
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::execl("/usr/bin/dbus-daemon", "dbus-daemon", config_flag.c_str(), "--nofork", "--nopidfile",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 500 && !std::filesystem::exists(socket); ++i) ::usleep(10 * 1000);
  const bool started = std::filesystem::exists(socket);
  if (started) {
    ScopedEnv env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=" + socket);
    const TimedResult run = RunUnit("nginx");
    CHECK_FALSE(run.result.up);
    CHECK(run.result.error.find("systemd is not on the system bus at unix:path=" + socket +
                                " (org.freedesktop.DBus.Error.ServiceUnknown") == 0);
    CHECK(run.seconds < 2);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  REQUIRE(started);
}

TEST_CASE("systemd probe: a real unit, where this machine runs systemd", "[systemd]") {
  if (!std::filesystem::exists("/run/systemd/system") ||
      !std::filesystem::exists("/run/dbus/system_bus_socket")) {
    WARN(
        "skipped: this machine does not run systemd with a system bus, so reading a real "
        "unit's ActiveState and NRestarts could not be tested here");
    return;
  }
  ScopedEnv env("DBUS_SYSTEM_BUS_ADDRESS", std::nullopt);
  const TimedResult journald = RunUnit("systemd-journald");
  CHECK(journald.result.up);
  CHECK(std::get<std::string>(journald.result.fields.at("state")) == "active");
  CHECK(Number(journald.result, "restarts") >= 0);
  const TimedResult missing = RunUnit("rollguard-no-such-unit.service");
  CHECK_FALSE(missing.result.up);
  CHECK(missing.result.error == "unit rollguard-no-such-unit.service is not loaded (not-found)");
}

TEST_CASE("systemd probe: unit names are checked when the config is loaded", "[systemd][parse]") {
  CHECK(ParseError("[probe unit]\ntype = systemd\n") ==
        "probes.conf:1: [probe unit]: missing required key \"unit\"");
  CHECK(ParseError("[probe unit]\ntype = systemd\nunit = nginx; rm -rf\n") ==
        "probes.conf:3: [probe unit] unit: expected a systemd unit name like nginx.service, got "
        "\"nginx; rm -rf\"");
}
