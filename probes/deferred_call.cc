#include "probes/deferred_call.h"

#include <systemd/sd-event.h>

#include <utility>

namespace rollguard {

bool DeferredCall::Schedule(sd_event* event, std::function<void()> call) {
  Cancel();
  if (sd_event_add_defer(event, &source_, &DeferredCall::OnDefer, this) < 0) {
    source_ = nullptr;
    return false;
  }
  sd_event_source_set_enabled(source_, SD_EVENT_ONESHOT);
  call_ = std::move(call);
  return true;
}

void DeferredCall::Cancel() {
  if (source_ == nullptr) return;
  sd_event_source_disable_unref(source_);
  source_ = nullptr;
  call_ = nullptr;
}

int DeferredCall::OnDefer(sd_event_source* /*source*/, void* self) {
  auto* deferred = static_cast<DeferredCall*>(self);
  std::function<void()> call = std::move(deferred->call_);
  deferred->Cancel();
  // `deferred` may be destroyed by the call; nothing touches it afterwards.
  if (call) call();
  return 0;
}

}  // namespace rollguard
