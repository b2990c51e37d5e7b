// Delivery of notifications: one queue per notifier, drained over HTTP on the loop.
//
// NotificationQueue is the pure part (time as a value): ordering, the bound, retries
// with exponential backoff, giving up, and the counts. NotificationSender drives one
// queue with libcurl on the daemon's sd-event loop: one POST in flight per notifier,
// never blocking the loop, so a receiver that is down or slow costs probes, rules and
// actions nothing.
//
// Outcomes of one attempt: a 2xx answer is sent; a connection error, a timeout, 408,
// 429 or 5xx is retried (after 1s, 2s, 4s, ... at most 60s, or a larger Retry-After)
// until `max_tries` attempts were made; any other answer (a 4xx: wrong URL, revoked
// Slack hook, malformed payload) fails at once, since repeating it cannot help.
//
// Thread-safety: none; everything happens on the loop's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/time.h"
#include "daemon/event_log.h"

typedef struct sd_event sd_event;                // NOLINT: matches <systemd/sd-event.h>
typedef struct sd_event_source sd_event_source;  // NOLINT
typedef void CURL;                               // NOLINT: matches <curl/curl.h>
struct curl_slist;

namespace rollguard {

class CurlMulti;

struct OutgoingMessage {
  std::string body;  // JSON
  // When not empty, a newer message with the same key replaces one still waiting (e.g.
  // Alertmanager keep-alives: only the latest state matters).
  std::string coalesce_key;
  std::string what;  // for logs: "grade_changed api"
};

struct QueuePolicy {
  size_t max_queue = 100;  // waiting messages (the one in flight not counted)
  int max_tries = 10;
  Duration first_backoff = std::chrono::seconds(1);
  Duration max_backoff = std::chrono::seconds(60);
};

enum class AttemptOutcome { kSent, kTransient, kPermanent };
enum class FinishResult { kDelivered, kWillRetry, kGaveUp };

class NotificationQueue {
 public:
  explicit NotificationQueue(QueuePolicy policy) : policy_(policy) {}

  // A reload may change the bound (excess oldest messages are dropped) and the tries.
  void SetPolicy(QueuePolicy policy);

  // Appends `message`. When max_queue messages already wait, the oldest waiting one is
  // dropped (counted in dropped()); the message in flight is never dropped.
  void Push(OutgoingMessage message);

  // The message to attempt at `now`, marked in flight; nullptr when one is already in
  // flight, the queue is empty, or the head waits for its backoff.
  const OutgoingMessage* StartNext(TimePoint now);

  // The result of the attempt in flight. `retry_after` is the server's hint (429/503).
  // REQUIRES: in_flight().
  FinishResult Finish(AttemptOutcome outcome, TimePoint now,
                      std::optional<Duration> retry_after = std::nullopt);

  // When the head may be attempted; nullopt when empty or in flight.
  std::optional<TimePoint> NextAttemptAt() const;

  // Tries made so far for the head (0 before its first attempt).
  int head_tries() const { return entries_.empty() ? 0 : entries_.front().tries; }
  bool in_flight() const { return in_flight_; }
  size_t size() const { return entries_.size(); }
  uint64_t sent() const { return sent_; }
  uint64_t failed() const { return failed_; }
  uint64_t dropped() const { return dropped_; }

  // The wait after the `tries`-th failed attempt: first_backoff * 2^(tries-1), capped.
  Duration Backoff(int tries) const;

 private:
  struct Entry {
    OutgoingMessage message;
    int tries = 0;
    TimePoint not_before{};
  };
  void Trim();

  QueuePolicy policy_;
  std::deque<Entry> entries_;
  bool in_flight_ = false;
  uint64_t sent_ = 0;
  uint64_t failed_ = 0;
  uint64_t dropped_ = 0;
};

// Where and how a sender posts.
struct SenderTarget {
  std::string url;  // secret: never logged
  Duration timeout = std::chrono::seconds(10);
  QueuePolicy policy;
};

// Drives one NotificationQueue over HTTP POST (Content-Type: application/json).
class NotificationSender {
 public:
  // Called for every final outcome: "sent", "failed" or "dropped".
  using ResultHook = std::function<void(const std::string& notifier, const std::string& result)>;

  // `curl`, `log` and `clock` must outlive the sender; `name` names it in logs.
  NotificationSender(CurlMulti& curl, std::string name, SenderTarget target, EventLog& log,
                     const Clock& clock, ResultHook hook);
  ~NotificationSender();
  NotificationSender(const NotificationSender&) = delete;
  NotificationSender& operator=(const NotificationSender&) = delete;

  void Reconfigure(SenderTarget target);
  // Queues `message` and starts it when nothing is in flight. Returns at once.
  void Send(OutgoingMessage message);

  const NotificationQueue& queue() const { return queue_; }

 private:
  static int OnTimer(sd_event_source* source, uint64_t usec, void* self);
  void Pump();
  void Start(const OutgoingMessage& message);
  void Done(int curl_code);

  CurlMulti& curl_;
  std::string name_;
  SenderTarget target_;
  EventLog& log_;
  const Clock& clock_;
  ResultHook hook_;
  NotificationQueue queue_;
  CURL* easy_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string body_;      // the in-flight request body (curl reads it in place)
  std::string response_;  // the first bytes of the answer, for error logs
  std::string retry_after_;
  std::string what_;
  sd_event_source* timer_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace rollguard
