#include "daemon/fleet_breaker.h"

#include <systemd/sd-event.h>

#include <algorithm>
#include <charconv>

namespace rollguard {
namespace {

// Shared by the scripts: the time to judge at (ARGV[1], or Redis's clock when empty) and
// the breaker's "open until" exactly as Breaker::OpenUntil computes it: the later of
// "fewer than max admissions in the window" and "cooldown since opened_at has passed".
constexpr std::string_view kScriptPrelude = R"lua(
local function judge_time(arg)
  local now = tonumber(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function open_until(admitted_key, state_key, now, max, window, cooldown)
  local times = redis.call('ZRANGEBYSCORE', admitted_key, '(' .. (now - window), '+inf', 'WITHSCORES')
  local count = #times / 2
  local result = nil
  if count >= max then result = tonumber(times[2 * (count - max + 1)]) + window end
  local opened_at = tonumber(redis.call('HGET', state_key, 'opened_at'))
  if opened_at and now < opened_at + cooldown then
    local ends = opened_at + cooldown
    if not result or ends > result then result = ends end
  end
  return result, count
end
)lua";

// KEYS: admitted, state, claim, claims. ARGV: now, max, window_ms, cooldown_ms, member,
// holder, claim? ('1'/'0'), lease_ms, claim_ttl_ms.
constexpr std::string_view kAdmitScript = R"lua(
local now = judge_time(ARGV[1])
local max, window, cooldown = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local claiming = ARGV[7] == '1'
if claiming then
  local claim = redis.call('HMGET', KEYS[3], 'holder', 'lease_until', 'result')
  if claim[1] then
    return {'claimed', now, claim[1], tonumber(claim[2]) or -1, claim[3] or ''}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local until_time, count = open_until(KEYS[1], KEYS[2], now, max, window, cooldown)
if until_time then return {'open', now, until_time, count} end
redis.call('ZADD', KEYS[1], now, ARGV[5])
count = count + 1
local opened = 0
if count >= max then
  redis.call('HSET', KEYS[2], 'opened_at', now)
  opened = 1
end
local ttl = window + cooldown
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
if claiming then
  local lease, claim_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
  redis.call('HSET', KEYS[3], 'holder', ARGV[6], 'claimed_at', now, 'lease_until', now + lease,
             'result', 'running')
  redis.call('PEXPIRE', KEYS[3], claim_ttl)
  redis.call('SADD', KEYS[4], KEYS[3])
  if redis.call('PTTL', KEYS[4]) < claim_ttl then redis.call('PEXPIRE', KEYS[4], claim_ttl) end
end
return {'admitted', now, count, opened}
)lua";

// KEYS: claim. ARGV: holder, lease_ms.
constexpr std::string_view kRenewScript = R"lua(
local now = judge_time('')
local claim = redis.call('HMGET', KEYS[1], 'holder', 'result')
if claim[1] ~= ARGV[1] or claim[2] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[2]))
return 1
)lua";

// KEYS: claim. ARGV: holder, result.
constexpr std::string_view kReleaseScript = R"lua(
local now = judge_time('')
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[2], 'finished_at', now, 'lease_until', now)
return 1
)lua";

// KEYS: admitted, state. Forgets admissions up to now and the open state (like
// Breaker::Reset: admissions stamped later, after a clock step, are kept).
constexpr std::string_view kResetScript = R"lua(
local now = judge_time('')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HDEL', KEYS[2], 'opened_at')
return 1
)lua";

// KEYS: admitted, state, claims. ARGV: max, window_ms, cooldown_ms.
// Returns {now, admitted in window, open until or -1,
//          "holder|claim|lease_until|result|claimed_at|finished_at"...}.
constexpr std::string_view kViewScript = R"lua(
local now = judge_time('')
local max, window, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local until_time, count = open_until(KEYS[1], KEYS[2], now, max, window, cooldown)
local reply = {now, count, until_time or -1}
for _, claim in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local fields = redis.call('HMGET', claim, 'holder', 'lease_until', 'result')
  local times = redis.call('HMGET', claim, 'claimed_at', 'finished_at')
  if not fields[1] then
    redis.call('SREM', KEYS[3], claim)
  else
    table.insert(reply, fields[1] .. '|' .. claim .. '|' .. (fields[2] or '-1') .. '|' ..
                 (fields[3] or '') .. '|' .. (times[1] or '-1') .. '|' .. (times[2] or '-1'))
  end
end
return reply
)lua";

std::string Script(std::string_view body) {
  return std::string(kScriptPrelude) + std::string(body);
}

std::string Millis(Duration duration) { return std::to_string(duration.count()); }

std::string BreakerKey(const std::string& prefix, const std::string& breaker,
                       std::string_view what) {
  return prefix + "breaker:" + breaker + ":" + std::string(what);
}

std::string ClaimKey(const std::string& prefix, const std::string& claim) {
  return prefix + "claim:" + claim;
}

std::optional<int64_t> IntegerAt(const RedisValue& value, size_t index) {
  if (value.elements.size() <= index) return std::nullopt;
  const RedisValue& element = value.elements[index];
  if (element.type != RedisValue::Type::kInteger) return std::nullopt;
  return element.integer;
}

std::string TextAt(const RedisValue& value, size_t index) {
  if (value.elements.size() <= index) return "";
  return value.elements[index].text;
}

FleetVerdict Malformed(const char* what) {
  FleetVerdict verdict;
  verdict.kind = FleetVerdict::Kind::kUnreachable;
  verdict.error = std::string("unexpected reply from the admission script: ") + what;
  return verdict;
}

}  // namespace

std::vector<std::string> FleetAdmitCommand(const std::string& key_prefix,
                                           const FleetAdmission& admission) {
  const bool claiming = !admission.claim.empty();
  return {"EVAL",
          Script(kAdmitScript),
          "4",
          BreakerKey(key_prefix, admission.breaker, "admitted"),
          BreakerKey(key_prefix, admission.breaker, "state"),
          claiming ? ClaimKey(key_prefix, admission.claim) : key_prefix + "claim:-",
          BreakerKey(key_prefix, admission.breaker, "claims"),
          admission.now ? std::to_string(ToMillis(*admission.now)) : "",
          std::to_string(std::max(1, admission.policy.max_actions)),
          Millis(admission.policy.window),
          Millis(admission.policy.cooldown),
          admission.holder + ":" + admission.member,
          admission.holder,
          claiming ? "1" : "0",
          Millis(admission.lease),
          Millis(std::max(admission.claim_ttl, admission.lease))};
}

std::vector<std::string> FleetRenewCommand(const std::string& key_prefix, const std::string& claim,
                                           const std::string& holder, Duration lease) {
  return {"EVAL", Script(kRenewScript), "1", ClaimKey(key_prefix, claim), holder, Millis(lease)};
}

std::vector<std::string> FleetReleaseCommand(const std::string& key_prefix,
                                             const std::string& claim, const std::string& holder,
                                             const std::string& result) {
  return {"EVAL", Script(kReleaseScript), "1", ClaimKey(key_prefix, claim), holder, result};
}

std::vector<std::string> FleetResetCommand(const std::string& key_prefix,
                                           const std::string& breaker) {
  return {"EVAL", Script(kResetScript), "2", BreakerKey(key_prefix, breaker, "admitted"),
          BreakerKey(key_prefix, breaker, "state")};
}

std::vector<std::string> FleetViewCommand(const std::string& key_prefix, const std::string& breaker,
                                          const BreakerPolicy& policy) {
  return {"EVAL",
          Script(kViewScript),
          "3",
          BreakerKey(key_prefix, breaker, "admitted"),
          BreakerKey(key_prefix, breaker, "state"),
          BreakerKey(key_prefix, breaker, "claims"),
          std::to_string(std::max(1, policy.max_actions)),
          Millis(policy.window),
          Millis(policy.cooldown)};
}

FleetVerdict ParseFleetAdmitReply(const RedisCallResult& call) {
  if (!call.error.empty()) {
    FleetVerdict verdict;
    verdict.kind = FleetVerdict::Kind::kUnreachable;
    verdict.error = call.error;
    return verdict;
  }
  const RedisValue& reply = call.value;
  if (reply.type != RedisValue::Type::kArray || reply.elements.empty()) {
    return Malformed("not an array");
  }
  const std::string kind = TextAt(reply, 0);
  const auto now = IntegerAt(reply, 1);
  if (!now) return Malformed("no time");
  FleetVerdict verdict;
  verdict.now = FromMillis(*now);
  if (kind == "admitted") {
    const auto count = IntegerAt(reply, 2);
    const auto opened = IntegerAt(reply, 3);
    if (!count || !opened) return Malformed("admitted without a count");
    verdict.kind = FleetVerdict::Kind::kAdmitted;
    verdict.admitted_in_window = static_cast<int>(*count);
    verdict.opened = *opened == 1;
    return verdict;
  }
  if (kind == "open") {
    const auto until = IntegerAt(reply, 2);
    const auto count = IntegerAt(reply, 3);
    if (!until || !count) return Malformed("open without a time");
    verdict.kind = FleetVerdict::Kind::kBreakerOpen;
    verdict.open_until = FromMillis(*until);
    verdict.admitted_in_window = static_cast<int>(*count);
    return verdict;
  }
  if (kind == "claimed") {
    verdict.kind = FleetVerdict::Kind::kClaimed;
    verdict.holder = TextAt(reply, 2);
    if (const auto lease = IntegerAt(reply, 3); lease && *lease >= 0) {
      verdict.lease_until = FromMillis(*lease);
    }
    verdict.holder_result = TextAt(reply, 4);
    return verdict;
  }
  return Malformed("unknown verdict");
}

FleetBreakerView ParseFleetViewReply(const RedisCallResult& call, TimePoint now) {
  FleetBreakerView view;
  view.checked_at = now;
  if (!call.error.empty()) {
    view.error = call.error;
    return view;
  }
  const RedisValue& reply = call.value;
  const auto redis_now = IntegerAt(reply, 0);
  const auto count = IntegerAt(reply, 1);
  const auto until = IntegerAt(reply, 2);
  if (reply.type != RedisValue::Type::kArray || !redis_now || !count || !until) {
    view.error = "unexpected reply from the status script";
    return view;
  }
  view.reachable = true;
  view.admitted_in_window = static_cast<int>(*count);
  if (*until >= 0) view.open_until = FromMillis(*until);
  struct Claim {
    int64_t claimed_at = -1;
    std::string line;
  };
  std::vector<Claim> claims;
  const auto number = [](const std::string& text) -> int64_t {
    int64_t value = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc() && end == text.data() + text.size() ? value : -1;
  };
  for (size_t i = 3; i < reply.elements.size(); ++i) {
    // "holder|{prefix}claim:ACTION:INCIDENT|lease_until|result|claimed_at|finished_at"
    std::vector<std::string> parts;
    const std::string& text = reply.elements[i].text;
    size_t start = 0;
    for (size_t bar = text.find('|'); bar != std::string::npos; bar = text.find('|', start)) {
      parts.push_back(text.substr(start, bar - start));
      start = bar + 1;
    }
    parts.push_back(text.substr(start));
    if (parts.size() != 6) continue;
    std::string claim = parts[1];
    if (const size_t at = claim.find("claim:"); at != std::string::npos) claim.erase(0, at + 6);
    const int64_t lease = number(parts[2]);
    const int64_t finished = number(parts[5]);
    std::string line;
    if (parts[3] == "running") {
      line = parts[0] + " holds " + claim;
      if (lease >= 0 && lease < *redis_now) {
        line +=
            " (lease lost " + FormatDuration(FromMillis(*redis_now) - FromMillis(lease)) + " ago)";
      } else if (lease >= 0) {
        line += " (lease until " + FormatIso8601(FromMillis(lease)) + ")";
      }
    } else {
      line = parts[0] + " ran " + claim + ": " + parts[3];
      if (finished >= 0) line += " at " + FormatIso8601(FromMillis(finished));
    }
    claims.push_back({number(parts[4]), std::move(line)});
  }
  std::stable_sort(claims.begin(), claims.end(),
                   [](const Claim& a, const Claim& b) { return a.claimed_at > b.claimed_at; });
  for (size_t i = 0; i < claims.size() && i < 10; ++i) view.claims.push_back(claims[i].line);
  return view;
}

std::string FleetIncident(const std::string& rule, const std::string& deploy_version,
                          Duration action_cooldown, Duration lease, Duration* claim_ttl) {
  if (!deploy_version.empty()) {
    *claim_ttl = std::max<Duration>(std::chrono::hours(24), action_cooldown);
    return rule + "@" + deploy_version;
  }
  *claim_ttl = std::max(action_cooldown, lease);
  return rule;
}

struct FleetBreakerClient::Renewal {
  FleetBreakerClient* owner = nullptr;
  std::string claim;
  std::string holder;
  sd_event_source* timer = nullptr;
};

FleetBreakerClient::FleetBreakerClient(sd_event* event, std::string breaker, BreakerPolicy policy,
                                       FleetSettings settings)
    : event_(event),
      breaker_(std::move(breaker)),
      policy_(policy),
      settings_(std::move(settings)) {}

FleetBreakerClient::~FleetBreakerClient() {
  for (auto& renewal : renewals_) sd_event_source_disable_unref(renewal->timer);
}

void FleetBreakerClient::Update(BreakerPolicy policy, FleetSettings settings) {
  policy_ = policy;
  settings_ = std::move(settings);
}

void FleetBreakerClient::Send(std::vector<std::string> argv,
                              std::function<void(RedisCallResult)> done) {
  calls_.push_back(std::make_unique<RedisCall>(event_));
  auto it = std::prev(calls_.end());
  // A RedisCall may be destroyed from its own callback (probes/redis_call.h).
  (*it)->Start(settings_.target, std::move(argv),
               [this, it, done = std::move(done)](RedisCallResult result) {
                 calls_.erase(it);
                 done(std::move(result));
               });
}

void FleetBreakerClient::Admit(FleetAdmission admission, std::function<void(FleetVerdict)> done) {
  admission.lease = settings_.lease;
  Send(FleetAdmitCommand(settings_.key_prefix, admission),
       [done = std::move(done)](RedisCallResult result) { done(ParseFleetAdmitReply(result)); });
}

void FleetBreakerClient::Hold(const std::string& claim, const std::string& holder) {
  auto renewal = std::make_unique<Renewal>();
  renewal->owner = this;
  renewal->claim = claim;
  renewal->holder = holder;
  const auto every = std::chrono::duration_cast<std::chrono::microseconds>(settings_.lease / 3);
  if (sd_event_add_time_relative(event_, &renewal->timer, CLOCK_MONOTONIC,
                                 static_cast<uint64_t>(std::max<int64_t>(every.count(), 1000)),
                                 1000, &FleetBreakerClient::OnRenew, renewal.get()) < 0) {
    return;  // the lease then simply runs out: others call it lost, nobody re-runs
  }
  renewals_.push_back(std::move(renewal));
}

int FleetBreakerClient::OnRenew(sd_event_source* source, uint64_t /*usec*/, void* userdata) {
  auto* renewal = static_cast<Renewal*>(userdata);
  FleetBreakerClient* self = renewal->owner;
  self->Send(FleetRenewCommand(self->settings_.key_prefix, renewal->claim, renewal->holder,
                               self->settings_.lease),
             [](RedisCallResult) {});
  const auto every =
      std::chrono::duration_cast<std::chrono::microseconds>(self->settings_.lease / 3);
  uint64_t now_us = 0;
  sd_event_now(self->event_, CLOCK_MONOTONIC, &now_us);
  sd_event_source_set_time(source,
                           now_us + static_cast<uint64_t>(std::max<int64_t>(every.count(), 1000)));
  sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
  return 0;
}

void FleetBreakerClient::Release(const std::string& claim, const std::string& holder,
                                 const std::string& result) {
  for (auto it = renewals_.begin(); it != renewals_.end(); ++it) {
    if ((*it)->claim == claim && (*it)->holder == holder) {
      sd_event_source_disable_unref((*it)->timer);
      renewals_.erase(it);
      break;
    }
  }
  Send(FleetReleaseCommand(settings_.key_prefix, claim, holder, result), [](RedisCallResult) {});
}

void FleetBreakerClient::Reset(std::function<void(std::string error)> done) {
  Send(FleetResetCommand(settings_.key_prefix, breaker_),
       [done = std::move(done)](RedisCallResult result) { done(result.error); });
}

void FleetBreakerClient::Refresh(TimePoint now, std::function<void(const FleetBreakerView&)> done) {
  Send(FleetViewCommand(settings_.key_prefix, breaker_, policy_),
       [this, now, done = std::move(done)](RedisCallResult result) {
         view_ = ParseFleetViewReply(result, now);
         done(view_);
       });
}

}  // namespace rollguard
