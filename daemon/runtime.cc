#include "daemon/runtime.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "daemon/control_socket.h"
#include "daemon/http_endpoints.h"
#include "daemon/metrics.h"
#include "daemon/notifier.h"
#include "daemon/observer.h"
#include "daemon/responder.h"
#include "daemon/schedule.h"
#include "daemon/status_board.h"
#include "probes/curl_multi.h"

namespace rollguard {
namespace {

uint64_t MonotonicNowUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

uint64_t ToMicros(Duration d) { return static_cast<uint64_t>(d.count()) * 1000; }

// Every rule not evaluated for this long is evaluated by the sweep: a safety net under
// the rules' own deadlines (RuleOutcome::next_evaluation), which already cover `for`,
// `recover`, staleness and windows without any probe reporting.
constexpr uint64_t kSweepIntervalUs = 1'000'000;
// The sweep visits the rules in this many slices across its interval. All at once, at
// 10,000 rules with probes at 1 s, it evaluated thousands of rules in one go (~0.5 us
// each) and every run due meanwhile started that much late.
constexpr size_t kSweepSlices = 10;
constexpr uint64_t kSweepTickUs = kSweepIntervalUs / kSweepSlices;
constexpr uint64_t kSweepTickAccuracyUs = 10'000;

constexpr uint64_t kProbeTimerAccuracyUs = 1'000;
// A `for` that elapsed should act within a few milliseconds, not sd-event's default 250.
constexpr uint64_t kRuleTimerAccuracyUs = 1'000;

class Daemon final : public ControlTarget {
 public:
  Daemon(const RuntimeOptions& options, EventLog& log) : options_(options), log_(log) {}

  ~Daemon() override {
    // A status request waiting for a publication would hold up the server's stop: the loop
    // has stopped and publishes no more.
    status_board_->StopRequests();
    http_.reset();  // its threads read metrics_ and status_board_
    StopProbes();
    control_.reset();
    responder_.reset();
    probe_context_.reset();
    if (sweep_ != nullptr) sd_event_source_unref(sweep_);
    if (schedule_timer_ != nullptr) sd_event_source_unref(schedule_timer_);
    if (deadline_timer_ != nullptr) sd_event_source_unref(deadline_timer_);
    if (publish_ != nullptr) sd_event_source_unref(publish_);
    if (publish_timer_ != nullptr) sd_event_source_unref(publish_timer_);
    if (status_wake_ != nullptr) sd_event_source_unref(status_wake_);  // closes its eventfd
    for (sd_event_source* source : signal_sources_) sd_event_source_unref(source);
    if (event_ != nullptr) sd_event_unref(event_);
  }

  int Run(Config config) {
    // Signals arrive through the loop; SIGCHLD is blocked for sd_event_add_child.
    sigset_t mask;
    sigemptyset(&mask);
    for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, signal);
    sigprocmask(SIG_BLOCK, &mask, nullptr);

    int rc = sd_event_default(&event_);
    if (rc < 0) return Fatal("cannot create the event loop", rc);
    for (int signal : {SIGTERM, SIGINT, SIGHUP}) {
      sd_event_source* source = nullptr;
      rc = sd_event_add_signal(event_, &source, signal, &Daemon::OnSignal, this);
      if (rc < 0) return Fatal("cannot watch signals", rc);
      signal_sources_.push_back(source);
    }
    // Sends WATCHDOG=1 from the loop itself when the unit sets WatchdogSec=.
    sd_event_set_watchdog(event_, 1);

    probe_context_ = std::make_unique<ProbeContext>(event_);
    // Observers (metrics, status, notifiers) are added to observers_ here, before the
    // responder and the first configuration are created, so they see everything.
    auto notifier = std::make_shared<NotifierObserver>(event_, log_, clock_, LocalHostName());
    notifier->SetResultHook(
        [metrics = metrics_](const std::string& name, const std::string& result) {
          metrics->CountNotification(name, result);  // rollguard_notifications_total
        });
    observers_.Add(notifier);
    observers_.Add(status_board_);
    observers_.Add(metrics_);
    auto responder = Responder::Create(event_, *probe_context_, config, options_.force_dry_run,
                                       log_, clock_, observers_);
    if (!responder) {
      log_.Error("cannot start: " + responder.error().message);
      return 1;
    }
    responder_ = std::move(*responder);
    status_board_->SetPausedUntil(responder_->PausedUntil(clock_.Now()));
    Install(std::move(config));
    // The CLI's way in (status, pause, resume, breaker reset, deployed). Without it the
    // daemon still watches and acts, so a socket that cannot be created is an error in
    // the log, not a reason to leave the service unguarded.
    if (auto control = ControlSocket::Create(event_, config_.daemon.socket, *this)) {
      control_ = std::move(*control);
      log_.Info("control socket " + control_->path() + " (" + control_->access() + ")");
    } else {
      log_.Error(control.error().message +
                 "; rollguard status/pause/resume/deployed/breaker "
                 "reset will not reach this daemon");
    }

    rc = sd_event_add_time_relative(event_, &sweep_, CLOCK_MONOTONIC, kSweepTickUs,
                                    kSweepTickAccuracyUs, &Daemon::OnSweep, this);
    if (rc < 0) return Fatal("cannot add the sweep timer", rc);
    sd_event_source_set_enabled(sweep_, SD_EVENT_ON);
    // Nothing is published before the first request: it wakes the loop and waits for a
    // whole document (StatusBoard::Request), so it never sees a placeholder.
    if (!StartHttp()) return 1;

    log_.Info("rollguard " ROLLGUARD_VERSION " started: " + std::to_string(config_.probes.size()) +
                  " probes, " + std::to_string(rules_->size()) + " rules" +
                  (options_.force_dry_run || config_.daemon.dry_run ? " (dry run)" : ""),
              {{"ROLLGUARD_CONFIG", config_.path}});
    sd_notify(0, ("READY=1\nSTATUS=" + StatusLine()).c_str());
    rc = sd_event_loop(event_);
    sd_notify(0, "STOPPING=1");
    responder_->Flush();
    if (rc < 0) return Fatal("event loop failed", rc);
    log_.Info("rollguard stopped");
    return 0;
  }

 private:
  // ControlTarget: what the control socket's commands do.
  std::string StatusJson() override {
    status_board_->SetPausedUntil(responder_->PausedUntil(clock_.Now()));
    return status_board_->Json();
  }
  Result<TimePoint> Pause(Duration duration) override {
    auto until = responder_->Pause(duration, clock_.Now());
    if (until) status_board_->SetPausedUntil(*until);
    return until;
  }
  bool Resume() override {
    const bool was_paused = responder_->Resume(clock_.Now());
    status_board_->SetPausedUntil(std::nullopt);
    return was_paused;
  }
  Status ResetBreaker(const std::string& name) override {
    return responder_->ResetBreaker(name, clock_.Now());
  }
  Status Deployed(const std::string& service, const std::string& version) override {
    return responder_->RecordDeploy(service, version, clock_.Now());
  }

  struct ProbeSlot {
    Daemon* daemon = nullptr;
    std::shared_ptr<const ProbeConfig> config;
    std::unique_ptr<Probe> probe;
    // The probe's index in the rules (RuleSet::FindProbe), found once per configuration.
    std::optional<size_t> rule_probe;
    bool in_flight = false;
  };

  int Fatal(const std::string& what, int rc) {
    log_.Error(what + ": " + std::strerror(-rc));
    return 1;
  }

  // Starts /metrics, /healthz and /api/v1/status on `[daemon] listen`, the loop's
  // publication of the status snapshot the HTTP threads read, and the eventfd through which
  // a request that finds no snapshot wakes the loop to publish one. False (logged) when the
  // address is invalid or cannot be bound: like any exporter, rollguard refuses to run
  // without the endpoint it was told to serve, so the unit fails visibly.
  bool StartHttp() {
    int rc = sd_event_add_post(event_, &publish_, &Daemon::OnPublish, this);
    if (rc < 0) {
      Fatal("cannot add the status publisher", rc);
      return false;
    }
    auto address = ParseListenAddress(config_.daemon.listen);
    if (!address) {
      log_.Error("cannot start: " + config_.path + ": [daemon] listen: " + address.error().message);
      return false;
    }
    if (!*address) {
      log_.Info("HTTP endpoints disabled ([daemon] listen = off)");
      return true;
    }
    const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) {
      Fatal("cannot create the status wake-up", -errno);
      return false;
    }
    rc = sd_event_add_io(event_, &status_wake_, wake_fd, EPOLLIN, &Daemon::OnStatusWake, this);
    if (rc < 0) {
      close(wake_fd);
      Fatal("cannot watch the status wake-up", rc);
      return false;
    }
    sd_event_source_set_io_fd_own(status_wake_, 1);
    // Called on the HTTP threads; a write to an eventfd is thread-safe and, non-blocking,
    // cannot stall them (a full counter already means a wake-up is pending).
    status_board_->SetWake([wake_fd] {
      const uint64_t one = 1;
      [[maybe_unused]] const ssize_t written = write(wake_fd, &one, sizeof(one));
    });
    auto http = HttpEndpoints::Start(**address, *metrics_, *status_board_);
    if (!http) {
      log_.Error("cannot start: [daemon] listen: " + http.error().message);
      return false;
    }
    http_ = std::move(*http);
    ListenAddress bound = **address;
    bound.port = http_->port();
    log_.Info("serving /metrics, /healthz, /api/v1/status on http://" + bound.ToString());
    return true;
  }

  // After every loop iteration: publish the status document when it changed, at most
  // every 100ms, while it is wanted (StatusBoard::kWantedFor after the last request), or
  // release it once it is not; a change inside the interval arms a timer so it is not
  // left waiting.
  static int OnPublish(sd_event_source* /*source*/, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    const std::optional<TimePoint> again =
        daemon->status_board_->MaybePublish(daemon->clock_.Now());
    if (again && daemon->publish_timer_ == nullptr) {
      const auto wait = std::max(Duration{1}, *again - daemon->clock_.Now());
      sd_event_add_time_relative(daemon->event_, &daemon->publish_timer_, CLOCK_MONOTONIC,
                                 ToMicros(wait), 0, &Daemon::OnPublishTimer, daemon);
    }
    return 0;
  }

  // An HTTP request found no status snapshot and set the board's request flag: the post
  // source (OnPublish) runs after this and starts the publication it waits for.
  static int OnStatusWake(sd_event_source* /*source*/, int fd, uint32_t /*revents*/,
                          void* /*userdata*/) {
    uint64_t count = 0;
    [[maybe_unused]] const ssize_t got = read(fd, &count, sizeof(count));
    return 0;
  }

  static int OnPublishTimer(sd_event_source* source, uint64_t /*usec*/, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    sd_event_source_disable_unref(source);
    daemon->publish_timer_ = nullptr;
    return 0;  // the post source runs after this and publishes
  }

  // Takes `config` as the running configuration: rules (with persisted or previous
  // grades restored) and probes (scheduled afresh).
  void Install(Config config) {
    std::shared_ptr<RuleSet> previous_rules = rules_;
    StopProbes();
    config_ = std::move(config);
    rules_ = config_.rules;
    responder_->Reconfigure(config_);
    responder_->RestoreGrades(*rules_);
    if (previous_rules) {
      // A reload keeps each surviving rule's grade, so it neither re-enters its grade
      // (running actions again) nor forgets an incident.
      for (size_t i = 0; i < previous_rules->size(); ++i) {
        if (auto index = rules_->Find(previous_rules->definition(i).name)) {
          rules_->Restore(*index, previous_rules->Snapshot(i));
        }
      }
    }
    last_evaluated_.assign(rules_->size(), TimePoint{});
    sweep_cursor_ = 0;
    // Deadlines are by rule index, and indexes belong to the old RuleSet: none may reach
    // the new one. Restored rules are stale until their probes report, so they have none.
    deadlines_.Clear();
    ArmDeadlines();
    observers_.OnConfigApplied(config_, clock_.Now());
    // Breakers are reported every second; observers see them from the start too.
    observers_.OnBreakers(responder_->Breakers(clock_.Now()), clock_.Now());
    const uint64_t now_us = MonotonicNowUs();
    for (const auto& probe_config : config_.probes) {
      auto slot = std::make_unique<ProbeSlot>();
      slot->daemon = this;
      slot->config = probe_config;
      slot->probe = probe_config->Instantiate(*probe_context_);
      slot->rule_probe = rules_->FindProbe(probe_config->spec().name);
      const uint64_t interval_us = ToMicros(probe_config->spec().interval);
      schedule_.Add(slots_.size(), now_us + InitialOffset(probe_config->spec().name, interval_us),
                    interval_us);
      slots_.push_back(std::move(slot));
    }
    ArmSchedule();
  }

  void StopProbes() {
    for (auto& slot : slots_) slot->probe->Cancel();
    slots_.clear();
    schedule_.Clear();
  }

  // One timer for every probe (daemon/schedule.h), set to the earliest slot. 1 ms
  // accuracy: sd-event's default (250 ms) would batch a quarter second of probes into one
  // wake-up, a burst of connections that starves short timeouts.
  void ArmSchedule() {
    const std::optional<uint64_t> due = schedule_.NextDue();
    if (!due) {
      if (schedule_timer_ != nullptr) sd_event_source_set_enabled(schedule_timer_, SD_EVENT_OFF);
      return;
    }
    if (schedule_timer_ == nullptr) {
      sd_event_add_time(event_, &schedule_timer_, CLOCK_MONOTONIC, *due, kProbeTimerAccuracyUs,
                        &Daemon::OnScheduleDue, this);
      return;
    }
    sd_event_source_set_time(schedule_timer_, *due);
    sd_event_source_set_enabled(schedule_timer_, SD_EVENT_ONESHOT);
  }

  static int OnScheduleDue(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    uint64_t now_us = 0;
    sd_event_now(daemon->event_, CLOCK_MONOTONIC, &now_us);
    // Next slots first, on the fixed grid: a slow run never delays the schedule.
    daemon->due_.clear();
    daemon->schedule_.TakeDue(now_us, daemon->due_);
    for (size_t index : daemon->due_) {
      if (index < daemon->slots_.size()) daemon->StartRun(*daemon->slots_[index]);
    }
    daemon->ArmSchedule();
    return 0;
  }

  static void StartRun(ProbeSlot& slot) {
    if (slot.in_flight) return;  // cannot happen while timeout < interval; be safe
    slot.in_flight = true;
    ProbeSlot* run = &slot;
    slot.probe->Start([run](ProbeResult result) {
      run->in_flight = false;
      run->daemon->OnProbeResult(*run, std::move(result));
    });
  }

  void OnProbeResult(const ProbeSlot& slot, ProbeResult result) {
    const TimePoint now = clock_.Now();
    const std::string& name = slot.config->spec().name;
    if (!result.up) {
      log_.Debug("probe " + name + " down: " + result.error, {{"ROLLGUARD_PROBE", name}});
    }
    observers_.OnProbeResult(slot.config->spec(), result, now);
    if (!slot.rule_probe) return;  // no rule was compiled with this probe
    // Record's list lives in the RuleSet and Evaluate never changes it; holding the
    // RuleSet keeps the list valid without copying it on every result.
    const std::shared_ptr<RuleSet> rules = rules_;
    for (size_t index : rules->Record(*slot.rule_probe, now, result)) Evaluate(index, now);
  }

  void Evaluate(size_t index, TimePoint now) {
    last_evaluated_[index] = now;
    RuleOutcome& outcome = outcome_;
    rules_->Evaluate(index, now, &outcome);
    if (outcome.next_evaluation) {
      deadlines_.Set(index, static_cast<uint64_t>(ToMillis(*outcome.next_evaluation)));
    } else {
      deadlines_.Remove(index);
    }
    ArmDeadlines();
    responder_->OnOutcome(*rules_, index, outcome, now);
    observers_.OnRuleEvaluated(*rules_, index, outcome, now);
    if (outcome.changed) status_dirty_ = true;
  }

  // One timer at the earliest rule deadline. Deadlines are wall-clock milliseconds, as
  // the rules keep time; the timer is monotonic, so it is set that far from now. Only a
  // new earliest deadline touches the timer: most evaluations move a later one.
  void ArmDeadlines() {
    const std::optional<uint64_t> due = deadlines_.NextDue();
    if (due == deadline_armed_) return;
    deadline_armed_ = due;
    if (!due) {
      if (deadline_timer_ != nullptr) sd_event_source_set_enabled(deadline_timer_, SD_EVENT_OFF);
      return;
    }
    // The clock truncates to whole milliseconds, so the real time is already at least
    // Now(): after `wait_ms` the clock reads at least the deadline, and the rule sees its
    // `for` elapsed rather than pending by a millisecond.
    const int64_t wait_ms =
        std::max<int64_t>(0, static_cast<int64_t>(*due) - ToMillis(clock_.Now()));
    const uint64_t at_us = MonotonicNowUs() + static_cast<uint64_t>(wait_ms) * 1000;
    if (deadline_timer_ == nullptr) {
      sd_event_add_time(event_, &deadline_timer_, CLOCK_MONOTONIC, at_us, kRuleTimerAccuracyUs,
                        &Daemon::OnDeadline, this);
      return;
    }
    sd_event_source_set_time(deadline_timer_, at_us);
    sd_event_source_set_enabled(deadline_timer_, SD_EVENT_ONESHOT);
  }

  // Evaluates every rule whose deadline has come. Each evaluation sets a deadline later
  // than `now` or none, and the due ones are taken out first, so this never spins. A
  // wake-up a little early (the wall clock stepped) takes nothing and re-arms.
  static int OnDeadline(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    const TimePoint now = daemon->clock_.Now();
    daemon->deadline_armed_.reset();  // the one-shot timer is spent
    daemon->due_rules_.clear();
    daemon->deadlines_.TakeDue(static_cast<uint64_t>(std::max<int64_t>(0, ToMillis(now))),
                               daemon->due_rules_);
    for (size_t index : daemon->due_rules_) {
      if (index < daemon->rules_->size()) daemon->Evaluate(index, now);
    }
    daemon->ArmDeadlines();
    return 0;
  }

  // One slice of the rules per tick, each rule visited once per kSweepIntervalUs; the
  // rest of the housekeeping once per interval, at the tick that starts a round.
  static int OnSweep(sd_event_source* source, uint64_t usec, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    sd_event_source_set_time(source, usec + kSweepTickUs);
    sd_event_source_set_enabled(source, SD_EVENT_ON);
    const TimePoint now = daemon->clock_.Now();
    const size_t count = daemon->rules_->size();
    const size_t slice = (count + kSweepSlices - 1) / kSweepSlices;
    const size_t end = std::min(count, daemon->sweep_cursor_ + slice);
    for (size_t i = daemon->sweep_cursor_; i < end; ++i) {
      if (now - daemon->last_evaluated_[i] >= std::chrono::seconds(1)) daemon->Evaluate(i, now);
    }
    daemon->sweep_cursor_ = end >= count ? 0 : end;
    if (++daemon->sweep_tick_ < kSweepSlices) return 0;
    daemon->sweep_tick_ = 0;
    daemon->responder_->Flush();
    daemon->observers_.OnBreakers(daemon->responder_->Breakers(now), now);
    if (daemon->http_) daemon->http_->Heartbeat();
    if (daemon->status_dirty_) {
      daemon->status_dirty_ = false;
      sd_notify(0, ("STATUS=" + daemon->StatusLine()).c_str());
    }
    return 0;
  }

  static int OnSignal(sd_event_source* /*source*/, const signalfd_siginfo* info, void* userdata) {
    auto* daemon = static_cast<Daemon*>(userdata);
    if (info->ssi_signo == SIGHUP) {
      daemon->Reload();
    } else {
      daemon->log_.Info(std::string("received ") + strsignal(static_cast<int>(info->ssi_signo)) +
                        ", stopping");
      sd_notify(0, "STOPPING=1");
      sd_event_exit(daemon->event_, 0);
    }
    return 0;
  }

  void Reload() {
    sd_notify(0, ("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(MonotonicNowUs())).c_str());
    LoadedConfig loaded = LoadConfig(options_.config_path);
    if (!loaded.config) {
      log_.Error("reload rejected, the running configuration stays in effect:\n" +
                 loaded.error.message);
      observers_.OnReloadFailed(loaded.error.message, clock_.Now());
      sd_notify(0, ("READY=1\nSTATUS=reload failed; " + StatusLine()).c_str());
      return;
    }
    for (const std::string& warning : loaded.config->warnings) log_.Warning(warning);
    if (loaded.config->daemon.listen != config_.daemon.listen) {
      log_.Warning("[daemon] listen changed to " + loaded.config->daemon.listen +
                   "; the HTTP endpoints stay on " + config_.daemon.listen + " until a restart");
      loaded.config->daemon.listen = config_.daemon.listen;
    }
    Install(std::move(*loaded.config));
    log_.Info("configuration reloaded: " + std::to_string(config_.probes.size()) + " probes, " +
              std::to_string(rules_->size()) + " rules");
    sd_notify(0, ("READY=1\nSTATUS=" + StatusLine()).c_str());
  }

  // "14 rules: 12 excellent, 1 warning, 1 critical; breaker closed"
  std::string StatusLine() const {
    int counts[kGradeCount] = {};
    for (size_t i = 0; i < rules_->size(); ++i) ++counts[GradeIndex(rules_->grade(i))];
    std::string line = std::to_string(rules_->size()) + " rules:";
    bool first = true;
    for (int g = 0; g < kGradeCount; ++g) {
      if (counts[g] == 0) continue;
      line += std::string(first ? " " : ", ") + std::to_string(counts[g]) + " " +
              std::string(GradeName(static_cast<Grade>(g)));
      first = false;
    }
    return line + "; " + responder_->BreakerSummary(clock_.Now());
  }

  RuntimeOptions options_;
  EventLog& log_;
  SystemClock clock_;
  sd_event* event_ = nullptr;
  std::vector<sd_event_source*> signal_sources_;
  sd_event_source* sweep_ = nullptr;
  // Every probe's next slot (ids are indexes into slots_), one timer at the earliest, and
  // OnScheduleDue's batch, kept so starting runs allocates nothing.
  ScheduleQueue schedule_;
  sd_event_source* schedule_timer_ = nullptr;
  std::vector<size_t> due_;
  // When each rule must be evaluated again without new data (ids are rule indexes), one
  // timer at the earliest (nullopt in deadline_armed_: off), and OnDeadline's batch.
  DeadlineQueue deadlines_;
  sd_event_source* deadline_timer_ = nullptr;
  std::optional<uint64_t> deadline_armed_;
  std::vector<size_t> due_rules_;
  sd_event_source* publish_ = nullptr;        // after each loop iteration: status snapshot
  sd_event_source* publish_timer_ = nullptr;  // a change waiting for the 100ms interval
  sd_event_source* status_wake_ = nullptr;    // an eventfd the HTTP threads write to
  std::unique_ptr<ProbeContext> probe_context_;
  // Declared before the responder, which holds a reference to it.
  ObserverList observers_;
  std::unique_ptr<Responder> responder_;
  std::shared_ptr<StatusBoard> status_board_ = std::make_shared<StatusBoard>();
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>();
  std::unique_ptr<HttpEndpoints> http_;  // reads metrics_ and status_board_ from its threads
  std::unique_ptr<ControlSocket> control_;
  Config config_;
  std::shared_ptr<RuleSet> rules_;
  std::vector<std::unique_ptr<ProbeSlot>> slots_;
  std::vector<TimePoint> last_evaluated_;
  size_t sweep_cursor_ = 0;  // the first rule of the sweep's next slice
  size_t sweep_tick_ = 0;    // ticks since the once-per-interval housekeeping
  // Every evaluation is written into this one outcome, so its reason keeps its capacity
  // and an evaluation that says what the last one said allocates nothing. Observers get
  // it by reference and keep nothing of it past their call.
  RuleOutcome outcome_;
  bool status_dirty_ = false;
};

}  // namespace

int RunDaemon(Config config, const RuntimeOptions& options, EventLog& log) {
  Daemon daemon(options, log);
  return daemon.Run(std::move(config));
}

}  // namespace rollguard
