#include "daemon/notification_queue.h"

#include <curl/curl.h>
#include <systemd/sd-event.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "probes/curl_multi.h"

namespace rollguard {
namespace {

// Kept from an answer for the log line of a failed delivery (Slack says why in its body).
constexpr size_t kResponseKept = 200;

uint64_t MonotonicNowUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

size_t KeepResponse(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<std::string*>(user);
  const size_t bytes = size * count;
  if (response->size() < kResponseKept) {
    response->append(data, std::min(bytes, kResponseKept - response->size()));
  }
  return bytes;
}

size_t KeepRetryAfter(char* data, size_t size, size_t count, void* user) {
  const size_t bytes = size * count;
  std::string_view line(data, bytes);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string lower(line.substr(0, kName.size()));
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == kName) {
      std::string value(line.substr(kName.size()));
      value.erase(std::remove_if(value.begin(), value.end(),
                                 [](unsigned char c) { return std::isspace(c) != 0; }),
                  value.end());
      *static_cast<std::string*>(user) = value;
    }
  }
  return bytes;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// NotificationQueue

void NotificationQueue::SetPolicy(QueuePolicy policy) {
  policy_ = policy;
  Trim();
}

void NotificationQueue::Trim() {
  const size_t reserved = in_flight_ ? 1 : 0;  // the head in flight is never dropped
  while (entries_.size() - reserved > policy_.max_queue) {
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(reserved));
    ++dropped_;
  }
}

void NotificationQueue::Push(OutgoingMessage message) {
  if (!message.coalesce_key.empty()) {
    const size_t first_waiting = in_flight_ ? 1 : 0;
    for (size_t i = first_waiting; i < entries_.size(); ++i) {
      if (entries_[i].message.coalesce_key == message.coalesce_key) {
        entries_[i].message = std::move(message);
        return;
      }
    }
  }
  entries_.push_back(Entry{std::move(message), 0, TimePoint{}});
  Trim();
}

const OutgoingMessage* NotificationQueue::StartNext(TimePoint now) {
  if (in_flight_ || entries_.empty() || entries_.front().not_before > now) return nullptr;
  in_flight_ = true;
  ++entries_.front().tries;
  return &entries_.front().message;
}

Duration NotificationQueue::Backoff(int tries) const {
  Duration wait = policy_.first_backoff;
  for (int i = 1; i < tries && wait < policy_.max_backoff; ++i) wait *= 2;
  return std::min(wait, policy_.max_backoff);
}

FinishResult NotificationQueue::Finish(AttemptOutcome outcome, TimePoint now,
                                       std::optional<Duration> retry_after) {
  in_flight_ = false;
  Entry& head = entries_.front();
  if (outcome == AttemptOutcome::kSent) {
    entries_.pop_front();
    ++sent_;
    return FinishResult::kDelivered;
  }
  if (outcome == AttemptOutcome::kPermanent || head.tries >= policy_.max_tries) {
    entries_.pop_front();
    ++failed_;
    return FinishResult::kGaveUp;
  }
  Duration wait = Backoff(head.tries);
  if (retry_after) wait = std::min(std::max(wait, *retry_after), policy_.max_backoff);
  head.not_before = now + wait;
  Trim();
  return FinishResult::kWillRetry;
}

std::optional<TimePoint> NotificationQueue::NextAttemptAt() const {
  if (in_flight_ || entries_.empty()) return std::nullopt;
  return entries_.front().not_before;
}

// ---------------------------------------------------------------------------------------
// NotificationSender

NotificationSender::NotificationSender(CurlMulti& curl, std::string name, SenderTarget target,
                                       EventLog& log, const Clock& clock, ResultHook hook)
    : curl_(curl),
      name_(std::move(name)),
      target_(std::move(target)),
      log_(log),
      clock_(clock),
      hook_(std::move(hook)),
      queue_(target_.policy) {
  headers_ = curl_slist_append(headers_, "Content-Type: application/json");
  headers_ = curl_slist_append(headers_, "User-Agent: rollguard/" ROLLGUARD_VERSION);
}

NotificationSender::~NotificationSender() {
  *alive_ = false;
  if (easy_ != nullptr) {
    curl_.Remove(easy_);
    curl_easy_cleanup(easy_);
  }
  curl_slist_free_all(headers_);
  if (timer_ != nullptr) sd_event_source_disable_unref(timer_);
}

void NotificationSender::Reconfigure(SenderTarget target) {
  target_ = std::move(target);
  const uint64_t before = queue_.dropped();
  queue_.SetPolicy(target_.policy);
  for (uint64_t i = before; i < queue_.dropped(); ++i) hook_(name_, "dropped");
}

void NotificationSender::Send(OutgoingMessage message) {
  const uint64_t before = queue_.dropped();
  queue_.Push(std::move(message));
  if (queue_.dropped() > before) {
    log_.Warning("notifier " + name_ + ": queue full (" + std::to_string(target_.policy.max_queue) +
                     "), dropped the oldest message",
                 {{"ROLLGUARD_NOTIFIER", name_}});
    for (uint64_t i = before; i < queue_.dropped(); ++i) hook_(name_, "dropped");
  }
  Pump();
}

void NotificationSender::Pump() {
  const TimePoint now = clock_.Now();
  if (const OutgoingMessage* message = queue_.StartNext(now)) {
    Start(*message);
    return;
  }
  const auto due = queue_.NextAttemptAt();
  if (!due) return;
  const uint64_t wait_us = static_cast<uint64_t>(std::max<int64_t>(0, (*due - now).count())) * 1000;
  const uint64_t at = MonotonicNowUs() + wait_us;
  if (timer_ == nullptr) {
    if (sd_event_add_time(curl_.event(), &timer_, CLOCK_MONOTONIC, at, 1000,
                          &NotificationSender::OnTimer, this) < 0) {
      timer_ = nullptr;
      log_.Error("notifier " + name_ + ": cannot add a retry timer");
      return;
    }
  } else {
    sd_event_source_set_time(timer_, at);
  }
  sd_event_source_set_enabled(timer_, SD_EVENT_ONESHOT);
}

int NotificationSender::OnTimer(sd_event_source* /*source*/, uint64_t /*usec*/, void* self) {
  static_cast<NotificationSender*>(self)->Pump();
  return 0;
}

void NotificationSender::Start(const OutgoingMessage& message) {
  body_ = message.body;
  what_ = message.what;
  response_.clear();
  retry_after_.clear();
  if (easy_ == nullptr) easy_ = curl_easy_init();
  CURL* easy = easy_;
  curl_easy_reset(easy);
  const long timeout_ms = static_cast<long>(target_.timeout.count());  // NOLINT(runtime/int)
  curl_easy_setopt(easy, CURLOPT_URL, target_.url.c_str());
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body_.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 5000L));
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &KeepResponse);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &response_);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &KeepRetryAfter);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &retry_after_);
  std::weak_ptr<bool> alive = alive_;
  const bool added = curl_.Add(easy, [this, alive](int code) {
    if (alive.expired() || !*alive.lock()) return;
    Done(code);
  });
  if (!added) Done(CURLE_FAILED_INIT);
}

void NotificationSender::Done(int curl_code) {
  long status = 0;  // NOLINT(runtime/int): curl's type
  if (curl_code == CURLE_OK) curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  AttemptOutcome outcome = AttemptOutcome::kTransient;
  std::string problem;
  if (curl_code != CURLE_OK) {
    // curl_easy_strerror, not the error buffer: the buffer may quote the (secret) URL.
    problem = curl_easy_strerror(static_cast<CURLcode>(curl_code));
  } else if (status >= 200 && status < 300) {
    outcome = AttemptOutcome::kSent;
  } else {
    problem = "HTTP " + std::to_string(status);
    if (!response_.empty()) problem += " (" + response_ + ")";
    if (status != 408 && status != 429 && status < 500) outcome = AttemptOutcome::kPermanent;
  }
  std::optional<Duration> retry_after;
  if (!retry_after_.empty() &&
      std::all_of(retry_after_.begin(), retry_after_.end(),
                  [](unsigned char c) { return std::isdigit(c) != 0; }) &&
      retry_after_.size() < 6) {
    retry_after = std::chrono::seconds(std::atoi(retry_after_.c_str()));
  }
  const int tries = queue_.head_tries();
  const FinishResult result = queue_.Finish(outcome, clock_.Now(), retry_after);
  const LogFields fields = {{"ROLLGUARD_NOTIFIER", name_}};
  switch (result) {
    case FinishResult::kDelivered:
      log_.Debug("notifier " + name_ + ": sent " + what_, fields);
      hook_(name_, "sent");
      break;
    case FinishResult::kWillRetry:
      log_.Debug("notifier " + name_ + ": " + what_ + " not delivered (" + problem +
                     "), retrying after attempt " + std::to_string(tries),
                 fields);
      break;
    case FinishResult::kGaveUp:
      log_.Warning("notifier " + name_ + ": gave up on " + what_ + " after " +
                       std::to_string(tries) + (tries == 1 ? " attempt: " : " attempts: ") +
                       problem,
                   fields);
      hook_(name_, "failed");
      break;
  }
  Pump();
}

}  // namespace rollguard
