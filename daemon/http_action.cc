#include "daemon/http_action.h"

#include <curl/curl.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include "common/strings.h"
#include "probes/curl_multi.h"
#include "probes/deferred_call.h"
#include "probes/probe.h"

namespace rollguard {
namespace {

constexpr size_t kMaxResponseKept = 64 * 1024;

uint64_t MonotonicUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

size_t OnResponseBody(char* data, size_t size, size_t count, void* opaque) {
  auto* kept = static_cast<std::string*>(opaque);
  const size_t bytes = size * count;
  if (kept->size() < kMaxResponseKept) {
    kept->append(data, std::min(bytes, kMaxResponseKept - kept->size()));
  }
  return bytes;
}

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

}  // namespace

std::string RenderActionBody(std::string_view body_template,
                             const std::map<std::string, std::string>& variables) {
  std::string out;
  size_t at = 0;
  for (;;) {
    const size_t open = body_template.find("{{", at);
    const size_t close = open == std::string_view::npos ? open : body_template.find("}}", open + 2);
    if (open == std::string_view::npos || close == std::string_view::npos) {
      out += body_template.substr(at);
      return out;
    }
    out += body_template.substr(at, open - at);
    std::string_view inner = Trim(body_template.substr(open + 2, close - open - 2));
    bool as_json = false;
    if (const size_t bar = inner.find('|'); bar != std::string_view::npos) {
      as_json = Trim(inner.substr(bar + 1)) == "json";
      inner = Trim(inner.substr(0, bar));
    }
    auto it = variables.find(std::string(inner));
    const std::string value = it == variables.end() ? "" : it->second;
    out += as_json ? nlohmann::json(value).dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace)
                   : value;
    at = close + 2;
  }
}

struct HttpActionRunner::Transfer {
  HttpActionRequest request;
  Callback done;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string response;
  char error[CURL_ERROR_SIZE] = {};
  uint64_t started_us = 0;
  DeferredCall deferred;

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
  }
};

HttpActionRunner::HttpActionRunner(ProbeContext& probes) : probes_(probes) {}

HttpActionRunner::~HttpActionRunner() {
  for (auto& [id, transfer] : transfers_) probes_.curl().Remove(transfer->easy);
}

void HttpActionRunner::Start(HttpActionRequest request, Callback done) {
  const uint64_t id = next_id_++;
  auto transfer = std::make_unique<Transfer>();
  Transfer& t = *transfer;
  t.request = std::move(request);
  t.done = std::move(done);
  t.started_us = MonotonicUs();
  t.easy = curl_easy_init();
  bool ok = t.easy != nullptr;
  auto set = [&ok](CURLcode code) { ok = ok && code == CURLE_OK; };
  if (ok) {
    const HttpActionRequest& r = t.request;
    set(curl_easy_setopt(t.easy, CURLOPT_URL, r.url.c_str()));
    set(curl_easy_setopt(t.easy, CURLOPT_PROTOCOLS_STR, "http,https"));
    set(curl_easy_setopt(t.easy, CURLOPT_NOSIGNAL, 1L));
    set(curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS,
                         static_cast<long>(r.timeout.count())));  // NOLINT(runtime/int)
    set(curl_easy_setopt(t.easy, CURLOPT_FOLLOWLOCATION, 0L));
    set(curl_easy_setopt(t.easy, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION));
    set(curl_easy_setopt(t.easy, CURLOPT_ERRORBUFFER, t.error));
    set(curl_easy_setopt(t.easy, CURLOPT_WRITEFUNCTION, &OnResponseBody));
    set(curl_easy_setopt(t.easy, CURLOPT_WRITEDATA, &t.response));
    set(curl_easy_setopt(t.easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(r.body.size())));
    set(curl_easy_setopt(t.easy, CURLOPT_COPYPOSTFIELDS, r.body.c_str()));
    if (r.method != "POST") set(curl_easy_setopt(t.easy, CURLOPT_CUSTOMREQUEST, r.method.c_str()));
    t.headers = curl_slist_append(t.headers, "Expect:");
    for (const std::string& header : r.headers) {
      if (curl_slist* appended = curl_slist_append(t.headers, header.c_str())) t.headers = appended;
    }
    set(curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, t.headers));
  }
  transfers_.emplace(id, std::move(transfer));
  if (ok && probes_.curl().Add(t.easy, [this, id](int code) { Finish(id, code); })) return;
  // Reported from the loop, never from inside Start().
  t.deferred.Schedule(probes_.event(), [this, id] { Finish(id, -1); });
}

void HttpActionRunner::Finish(uint64_t id, int curl_code) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  std::unique_ptr<Transfer> transfer = std::move(it->second);
  transfers_.erase(it);
  const HttpActionRequest& request = transfer->request;
  ExecResult result;
  result.duration = std::chrono::duration_cast<Duration>(
      std::chrono::microseconds(MonotonicUs() - transfer->started_us));
  if (curl_code < 0) {
    result.outcome = ExecOutcome::kFailed;
    result.error = "could not start the request to " + request.url + " (libcurl refused it)";
  } else if (curl_code != CURLE_OK) {
    const auto code = static_cast<CURLcode>(curl_code);
    result.outcome =
        code == CURLE_OPERATION_TIMEDOUT ? ExecOutcome::kTimeout : ExecOutcome::kFailed;
    result.error = request.method + " " + request.url + ": " +
                   (transfer->error[0] != '\0' ? std::string(transfer->error)
                                               : std::string(curl_easy_strerror(code)));
  } else {
    long status = 0;  // NOLINT(runtime/int): curl's type
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
    bool expected = false;
    for (const ActionStatusRange& range : request.expect_status) {
      expected = expected || (status >= range.low && status <= range.high);
    }
    if (expected) {
      result.outcome = ExecOutcome::kOk;
    } else {
      result.outcome = ExecOutcome::kFailed;
      result.error = request.method + " " + request.url + ": HTTP " + std::to_string(status) +
                     ", expected " + request.expect_status_text;
      if (const std::string line = FirstLine(transfer->response); !line.empty()) {
        result.error += " (" + line + ")";
      }
    }
  }
  Callback done = std::move(transfer->done);
  transfer.reset();
  done(result);
}

}  // namespace rollguard
