// SystemdActionRunner: performs `type = systemd` actions (spec §5): asks systemd over
// D-Bus (the system bus, sd-bus attached to the event loop, asynchronous) to restart,
// stop, start or reload a unit — what `systemctl restart UNIT` asks, in "replace" mode.
//
// Like `systemctl restart`, it waits for the job: success means systemd's JobRemoved
// signal for the job said "done". Failure: the job ended otherwise ("failed",
// "dependency", "canceled", ... — the unit did not come back; see its journal), no
// system bus (the error says so at once — never a hang), systemd refusing (no such unit,
// access denied: its D-Bus error name and message). No reply or no job end within the
// action's timeout: kTimeout (the job itself is left to systemd).
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

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_bus sd_bus;                    // NOLINT: matches <systemd/sd-bus.h>
typedef struct sd_bus_message sd_bus_message;    // NOLINT
typedef struct sd_bus_slot sd_bus_slot;          // NOLINT
typedef struct sd_event_source sd_event_source;  // NOLINT

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
  friend struct SystemdBusCallbacks;  // the C callbacks of the bus and the loop
  void JobRemoved(sd_bus_message* message);

  sd_event* event_;
  sd_bus* bus_ = nullptr;
  sd_bus_slot* job_removed_ = nullptr;  // the match on the Manager's JobRemoved signal
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Call>> calls_;
};

}  // namespace rollguard
