// DeferredCall: runs a function once, from the next iteration of an sd-event loop.
//
// A probe that knows its result inside Start() (e.g. libcurl refused the handle) still
// has to deliver it from the loop, never re-entrantly from Start() (the Probe contract).
#pragma once

#include <functional>

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT

namespace rollguard {

class DeferredCall {
 public:
  DeferredCall() = default;
  ~DeferredCall() { Cancel(); }
  DeferredCall(const DeferredCall&) = delete;
  DeferredCall& operator=(const DeferredCall&) = delete;

  // Replaces any pending call. False when the loop refuses a new source (out of memory,
  // or the loop has finished): `call` is then dropped.
  bool Schedule(sd_event* event, std::function<void()> call);
  // Drops the pending call, if any.
  void Cancel();
  bool pending() const { return source_ != nullptr; }

 private:
  static int OnDefer(sd_event_source* source, void* self);

  sd_event_source* source_ = nullptr;
  std::function<void()> call_;
};

}  // namespace rollguard
