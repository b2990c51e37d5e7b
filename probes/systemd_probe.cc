#include "probes/systemd_probe.h"

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/strings.h"
#include "probes/deferred_call.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

constexpr const char* kDestination = "org.freedesktop.systemd1";
constexpr const char* kUnitInterface = "org.freedesktop.systemd1.Unit";
constexpr const char* kServiceInterface = "org.freedesktop.systemd1.Service";
constexpr const char* kDefaultSystemBus = "unix:path=/run/dbus/system_bus_socket";

std::string SystemBusAddress() {
  const char* address = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  return address != nullptr && *address != '\0' ? address : kDefaultSystemBus;
}

uint64_t Usec(Duration d) { return d.count() <= 0 ? 1 : static_cast<uint64_t>(d.count()) * 1000; }

struct SystemdOptions {
  std::string unit;
  std::string object_path;
  bool is_service = false;
  Duration timeout;
};

class SystemdProbe final : public Probe {
 public:
  SystemdProbe(std::shared_ptr<const SystemdOptions> options, sd_event* event)
      : options_(std::move(options)), event_(event) {}
  ~SystemdProbe() override {
    Cancel();
    DropBus();
  }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    sd_event_now(event_, CLOCK_MONOTONIC, &started_usec_);
    result_ = ProbeResult{};
    if (drop_bus_) DropBus();
    if (bus_ == nullptr) {
      const int r = OpenBus();
      if (r < 0) {
        result_.error =
            "cannot reach the system bus at " + SystemBusAddress() + ": " + std::strerror(-r);
        DropBus();
        deferred_.Schedule(event_, [this] { Finish(); });
        return;
      }
    }
    if (sd_event_add_time_relative(event_, &timer_, CLOCK_MONOTONIC, Usec(options_->timeout), 1000,
                                   &SystemdProbe::OnTimeout, this) < 0) {
      timer_ = nullptr;
    }
    step_ = Step::kLoadState;
    Ask(kUnitInterface, "LoadState");
  }

  void Cancel() override {
    deferred_.Cancel();
    if (call_ != nullptr) call_ = sd_bus_slot_unref(call_);
    if (timer_ != nullptr) {
      sd_event_source_disable_unref(timer_);
      timer_ = nullptr;
    }
    done_ = nullptr;
  }

 private:
  enum class Step { kLoadState, kActiveState, kRestarts };

  int OpenBus() {
    int r = sd_bus_open_system(&bus_);
    if (r < 0) return r;
    r = sd_bus_attach_event(bus_, event_, SD_EVENT_PRIORITY_NORMAL);
    return r;
  }

  void DropBus() {
    // No flush: a peer that stopped reading must not block the loop.
    if (bus_ != nullptr) bus_ = sd_bus_close_unref(bus_);
    drop_bus_ = false;
  }

  void Ask(const char* interface, const char* property) {
    sd_bus_message* message = nullptr;
    int r =
        sd_bus_message_new_method_call(bus_, &message, kDestination, options_->object_path.c_str(),
                                       "org.freedesktop.DBus.Properties", "Get");
    if (r >= 0) r = sd_bus_message_append(message, "ss", interface, property);
    if (r >= 0) {
      r = sd_bus_call_async(bus_, &call_, message, &SystemdProbe::OnReply, this,
                            Usec(options_->timeout));
    }
    sd_bus_message_unref(message);
    if (r < 0) {
      call_ = nullptr;
      drop_bus_ = true;  // e.g. the connection broke since the last run: reopen next time
      // Deferred: Ask() runs inside Start(), which must never report synchronously.
      std::string error =
          "cannot reach the system bus at " + SystemBusAddress() + ": " + std::strerror(-r);
      deferred_.Schedule(event_,
                         [this, error = std::move(error)]() mutable { Fail(std::move(error)); });
    }
  }

  static int OnReply(sd_bus_message* reply, void* self, sd_bus_error* /*error*/) {
    static_cast<SystemdProbe*>(self)->HandleReply(reply);
    return 0;
  }

  static int OnTimeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
    auto* probe = static_cast<SystemdProbe*>(self);
    if (probe->call_ != nullptr) probe->call_ = sd_bus_slot_unref(probe->call_);
    probe->DropBus();  // a bus that does not answer in time is not trusted again
    probe->Fail("timed out after " + FormatDuration(probe->options_->timeout));
    return 0;
  }

  void HandleReply(sd_bus_message* reply) {
    call_ = sd_bus_slot_unref(call_);
    if (const sd_bus_error* error = sd_bus_message_get_error(reply)) {
      const std::string name = error->name != nullptr ? error->name : "unknown error";
      const std::string text = error->message != nullptr ? error->message : "";
      // A dead connection is reopened next run; a systemd-side error keeps it.
      if (name == SD_BUS_ERROR_NO_REPLY || name == SD_BUS_ERROR_DISCONNECTED ||
          sd_bus_is_open(bus_) <= 0) {
        drop_bus_ = true;  // not here: sd-bus is dispatching this very reply
      }
      // Not running, or bus activation of systemd1 failed: either way, no systemd here.
      if (name == SD_BUS_ERROR_SERVICE_UNKNOWN || name == SD_BUS_ERROR_NAME_HAS_NO_OWNER ||
          StartsWith(name, "org.freedesktop.DBus.Error.Spawn.")) {
        Fail("systemd is not on the system bus at " + SystemBusAddress() + " (" + name + ": " +
             text + ")");
      } else {
        Fail("systemd did not answer: " + name + ": " + text);
      }
      return;
    }
    const char* type = step_ == Step::kRestarts ? "u" : "s";
    int r = sd_bus_message_enter_container(reply, 'v', type);
    if (step_ == Step::kRestarts) {
      uint32_t restarts = 0;
      if (r >= 0) r = sd_bus_message_read(reply, "u", &restarts);
      if (r < 0) return Fail("systemd sent a malformed NRestarts");
      result_.fields["restarts"] = static_cast<double>(restarts);
      result_.up = result_.error.empty();
      return Finish();
    }
    const char* value = nullptr;
    if (r >= 0) r = sd_bus_message_read(reply, "s", &value);
    if (r < 0 || value == nullptr) return Fail("systemd sent a malformed unit property");
    if (step_ == Step::kLoadState) {
      if (std::strcmp(value, "loaded") != 0) {
        return Fail("unit " + options_->unit + " is not loaded (" + value + ")");
      }
      step_ = Step::kActiveState;
      return Ask(kUnitInterface, "ActiveState");
    }
    result_.fields["state"] = std::string(value);
    if (std::strcmp(value, "active") != 0) {
      result_.error = "unit " + options_->unit + " is " + value;
    }
    if (!options_->is_service) {
      result_.up = result_.error.empty();
      return Finish();
    }
    step_ = Step::kRestarts;
    Ask(kServiceInterface, "NRestarts");
  }

  void Fail(std::string error) {
    result_.up = false;
    result_.error = std::move(error);
    Finish();
  }

  void Finish() {
    if (call_ != nullptr) call_ = sd_bus_slot_unref(call_);
    if (timer_ != nullptr) {
      sd_event_source_disable_unref(timer_);
      timer_ = nullptr;
    }
    uint64_t now = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &now);
    result_.latency_seconds = static_cast<double>(now - started_usec_) / 1e6;
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result_));  // last: may restart or destroy this probe
  }

  std::shared_ptr<const SystemdOptions> options_;
  sd_event* event_;
  sd_bus* bus_ = nullptr;
  bool drop_bus_ = false;
  sd_bus_slot* call_ = nullptr;
  sd_event_source* timer_ = nullptr;
  Step step_ = Step::kLoadState;
  uint64_t started_usec_ = 0;
  ProbeResult result_;
  DeferredCall deferred_;
  ProbeDone done_;
};

class SystemdProbeConfig final : public ProbeConfig {
 public:
  SystemdProbeConfig(ProbeSpec spec, std::shared_ptr<const SystemdOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<SystemdProbe>(options_, context.event());
  }

 private:
  std::shared_ptr<const SystemdOptions> options_;
};

bool IsUnitNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr(":-_.\\@", c) != nullptr;
}

}  // namespace

std::shared_ptr<const ProbeConfig> ParseSystemdProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<SystemdOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* unit = keys.Required("unit")) {
    std::string name(Trim(unit->value));
    const bool valid = !name.empty() && name.size() <= 255 && name.front() != '.' &&
                       std::all_of(name.begin(), name.end(), IsUnitNameChar);
    if (!valid) {
      keys.ErrorAt(*unit,
                   "expected a systemd unit name like nginx.service, got " + Quoted(unit->value));
    } else {
      if (name.find('.') == std::string::npos) name += ".service";
      options->unit = name;
      options->is_service = EndsWith(name, ".service");
      char* path = nullptr;
      if (sd_bus_path_encode("/org/freedesktop/systemd1/unit", name.c_str(), &path) < 0) {
        keys.ErrorAt(*unit, "expected a systemd unit name, got " + Quoted(unit->value));
      } else {
        options->object_path = path;
        std::free(path);
      }
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<SystemdProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
