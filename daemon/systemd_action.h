// SystemdActionRunner: performs `type = systemd` actions (spec §5): asks systemd over
// D-Bus (the system bus, sd-bus attached to the event loop, asynchronous) to restart,
// stop, start or reload a unit — what `systemctl restart UNIT` asks, in "replace" mode.
//
// Success means systemd accepted the job (RestartUnit & co. returned a job path); the
// job's own outcome is not awaited, so a unit that fails to come back shows up in its
// probes and rules, not here. Failure: no system bus (the error says so at once — never
// a hang), systemd refusing (no such unit, access denied: its D-Bus error name and
// message), or no reply within the action's timeout (kTimeout).
//
// The bus connection is opened on first use and reopened after it breaks. Not
// thread-safe; the loop's thread only.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/time.h"
#include "probes/exec_runner.h"

typedef struct sd_event sd_event;  // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_bus sd_bus;      // NOLINT: matches <systemd/sd-bus.h>

namespace rollguard {

struct SystemdActionRequest {
  std::string unit;       // e.g. "api.service"
  std::string operation;  // restart | stop | start | reload
  Duration timeout = std::chrono::minutes(1);
};

class SystemdActionRunner {
 public:
  using Callback = std::function<void(const ExecResult& result)>;

  // `event` must outlive the runner.
  explicit SystemdActionRunner(sd_event* event);
  // Abandons calls in flight (callbacks not called) and closes the bus.
  ~SystemdActionRunner();
  SystemdActionRunner(const SystemdActionRunner&) = delete;
  SystemdActionRunner& operator=(const SystemdActionRunner&) = delete;

  // `done` is called exactly once, later, on the loop (also when there is no bus).
  void Start(SystemdActionRequest request, Callback done);

  int Running() const { return static_cast<int>(calls_.size()); }

 private:
  struct Call;
  void Finish(uint64_t id, ExecResult result);

  sd_event* event_;
  sd_bus* bus_ = nullptr;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Call>> calls_;
};

}  // namespace rollguard
