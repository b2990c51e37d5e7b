#include "daemon/systemd_action.h"

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>

#include <cstring>

#include "probes/deferred_call.h"

namespace rollguard {
namespace {

uint64_t MonotonicUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

const char* MethodFor(const std::string& operation) {
  if (operation == "restart") return "RestartUnit";
  if (operation == "stop") return "StopUnit";
  if (operation == "start") return "StartUnit";
  if (operation == "reload") return "ReloadUnit";
  return nullptr;
}

}  // namespace

// The C callbacks the bus and the loop call (friends of the runner).
struct SystemdBusCallbacks {
  static int OnJobRemoved(sd_bus_message* message, void* userdata, sd_bus_error* error);
  static int OnTimeout(sd_event_source* source, uint64_t usec, void* userdata);
};

struct SystemdActionRunner::Call {
  SystemdActionRunner* owner = nullptr;
  uint64_t id = 0;
  SystemdActionRequest request;
  Callback done;
  uint64_t started_us = 0;
  sd_bus_slot* slot = nullptr;
  sd_event_source* timeout = nullptr;  // the action's timeout, while the job runs
  std::string job;                     // the job's object path, once systemd replied
  DeferredCall deferred;

  ~Call() {
    sd_bus_slot_unref(slot);
    sd_event_source_disable_unref(timeout);
  }

  std::string What() const { return request.operation + " " + request.unit; }

  ExecResult Result(ExecOutcome outcome, std::string error) const {
    ExecResult result;
    result.outcome = outcome;
    result.error = std::move(error);
    result.duration =
        std::chrono::duration_cast<Duration>(std::chrono::microseconds(MonotonicUs() - started_us));
    return result;
  }

  static int OnReply(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto* call = static_cast<Call*>(userdata);
    const std::string what = call->What();
    ExecResult result;
    if (const sd_bus_error* error = sd_bus_message_get_error(reply)) {
      const bool timed_out = sd_bus_error_has_name(error, SD_BUS_ERROR_TIMEOUT) ||
                             sd_bus_error_has_name(error, SD_BUS_ERROR_NO_REPLY);
      result = call->Result(
          timed_out ? ExecOutcome::kTimeout : ExecOutcome::kFailed,
          what + ": " + (error->name != nullptr ? error->name : "error") +
              (error->message != nullptr ? std::string(": ") + error->message : std::string()));
    } else {
      const char* job = nullptr;
      if (sd_bus_message_read(reply, "o", &job) < 0 || job == nullptr) {
        result = call->Result(ExecOutcome::kFailed, what + ": systemd replied without a job");
      } else {
        // Accepted: now wait for the job's end (JobRemoved), within the action's timeout.
        call->job = job;
        const uint64_t deadline =
            call->started_us +
            static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(call->request.timeout)
                    .count());
        if (sd_event_add_time(call->owner->event_, &call->timeout, CLOCK_MONOTONIC, deadline, 1000,
                              &SystemdBusCallbacks::OnTimeout, call) >= 0) {
          return 0;
        }
        call->timeout = nullptr;
        result = call->Result(ExecOutcome::kFailed, what + ": cannot arm the job's timeout");
      }
    }
    call->owner->Finish(call->id, std::move(result));
    return 0;
  }
};

int SystemdBusCallbacks::OnJobRemoved(sd_bus_message* message, void* userdata,
                                      sd_bus_error* /*error*/) {
  static_cast<SystemdActionRunner*>(userdata)->JobRemoved(message);
  return 0;
}

int SystemdBusCallbacks::OnTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
  auto* call = static_cast<SystemdActionRunner::Call*>(userdata);
  call->owner->Finish(call->id, call->Result(ExecOutcome::kTimeout,
                                             call->What() + ": the job had not finished after " +
                                                 FormatDuration(call->request.timeout)));
  return 0;
}

void SystemdActionRunner::JobRemoved(sd_bus_message* message) {
  SystemdActionRunner* self = this;
  uint32_t job_id = 0;
  const char* job = nullptr;
  const char* unit = nullptr;
  const char* outcome = nullptr;
  if (sd_bus_message_read(message, "uoss", &job_id, &job, &unit, &outcome) < 0 || job == nullptr ||
      outcome == nullptr) {
    return;
  }
  for (auto& [id, call] : self->calls_) {
    if (call->job != job) continue;
    const std::string result(outcome);
    // "done" is systemctl's success; every other result means the unit did not get there.
    self->Finish(id, result == "done"
                         ? call->Result(ExecOutcome::kOk, "")
                         : call->Result(ExecOutcome::kFailed,
                                        call->What() + ": the job ended with \"" + result +
                                            "\" (journalctl -u " + call->request.unit + ")"));
    break;
  }
}

SystemdActionRunner::SystemdActionRunner(sd_event* event) : event_(event) {}

SystemdActionRunner::~SystemdActionRunner() {
  calls_.clear();  // unrefs the slots: their callbacks never run
  job_removed_ = sd_bus_slot_unref(job_removed_);
  if (bus_ != nullptr) sd_bus_flush_close_unref(bus_);
}

void SystemdActionRunner::Start(SystemdActionRequest request, Callback done) {
  const uint64_t id = next_id_++;
  auto owned = std::make_unique<Call>();
  Call& call = *owned;
  call.owner = this;
  call.id = id;
  call.request = std::move(request);
  call.done = std::move(done);
  call.started_us = MonotonicUs();
  calls_.emplace(id, std::move(owned));

  auto fail_later = [this, id, &call](std::string error) {
    ExecResult result = call.Result(ExecOutcome::kFailed, std::move(error));
    call.deferred.Schedule(event_, [this, id, result] { Finish(id, result); });
  };
  const char* method = MethodFor(call.request.operation);
  if (method == nullptr) {
    fail_later("unknown operation \"" + call.request.operation + "\"");
    return;
  }
  if (bus_ != nullptr && sd_bus_is_open(bus_) <= 0) {
    job_removed_ = sd_bus_slot_unref(job_removed_);
    sd_bus_flush_close_unref(bus_);
    bus_ = nullptr;
  }
  if (bus_ == nullptr) {
    int rc = sd_bus_open_system(&bus_);
    if (rc >= 0) rc = sd_bus_attach_event(bus_, event_, SD_EVENT_PRIORITY_NORMAL);
    // Before any job is asked for, so no job's end can be missed. systemd sends
    // JobRemoved to the client that asked for the job (as for systemctl).
    if (rc >= 0) {
      rc = sd_bus_match_signal_async(bus_, &job_removed_, "org.freedesktop.systemd1",
                                     "/org/freedesktop/systemd1",
                                     "org.freedesktop.systemd1.Manager", "JobRemoved",
                                     &SystemdBusCallbacks::OnJobRemoved, nullptr, this);
    }
    if (rc < 0) {
      job_removed_ = sd_bus_slot_unref(job_removed_);
      if (bus_ != nullptr) sd_bus_unref(bus_);
      bus_ = nullptr;
      fail_later(std::string("cannot reach systemd: no system D-Bus (") + std::strerror(-rc) + ")");
      return;
    }
  }
  sd_bus_message* message = nullptr;
  int rc = sd_bus_message_new_method_call(bus_, &message, "org.freedesktop.systemd1",
                                          "/org/freedesktop/systemd1",
                                          "org.freedesktop.systemd1.Manager", method);
  if (rc >= 0) rc = sd_bus_message_append(message, "ss", call.request.unit.c_str(), "replace");
  if (rc >= 0) {
    const auto timeout_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(call.request.timeout).count());
    rc = sd_bus_call_async(bus_, &call.slot, message, &Call::OnReply, &call, timeout_us);
  }
  sd_bus_message_unref(message);
  if (rc < 0) {
    fail_later(std::string("cannot ask systemd to ") + call.request.operation + " " +
               call.request.unit + ": " + std::strerror(-rc));
  }
}

void SystemdActionRunner::Finish(uint64_t id, ExecResult result) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  std::unique_ptr<Call> call = std::move(it->second);
  calls_.erase(it);
  Callback done = std::move(call->done);
  call.reset();
  done(result);
}

}  // namespace rollguard
