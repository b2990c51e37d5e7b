// HttpActionRunner: performs `type = http` actions (spec §5) with libcurl on the event
// loop, through the one CurlMulti the loop's probes share. Never blocks the loop.
//
// A request is `method url` with the action's headers and its rendered body (see
// RenderActionBody). Success: a response whose status is in `expect_status` (2xx by
// default). Anything else — no connection, TLS failure, an unexpected status — is
// kFailed with an error naming what happened; running longer than the action's timeout
// is kTimeout. Redirects are not followed (a rollback endpoint that redirects is a
// misconfiguration to see, not to paper over); the body of the response is read and
// dropped (at most 64 KiB kept for the error text's first line).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.h"
#include "daemon/config.h"
#include "probes/exec_runner.h"

namespace rollguard {

class ProbeContext;

struct HttpActionRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // already rendered
  Duration timeout = std::chrono::seconds(30);
  std::vector<ActionStatusRange> expect_status = {{200, 299}};
  std::string expect_status_text = "200-299";
};

// Renders an action body template: every `{{ NAME }}` becomes variables[NAME] and
// `{{ NAME | json }}` becomes it as a JSON string literal (quotes included). Names that
// are not in `variables` render as "" (config checking rejects unknown names).
std::string RenderActionBody(std::string_view body_template,
                             const std::map<std::string, std::string>& variables);

class HttpActionRunner {
 public:
  using Callback = std::function<void(const ExecResult& result)>;

  // Requests go through `probes`' CurlMulti (made at the first request: a daemon without
  // http actions or libcurl probes never initialises libcurl). `probes` must outlive the
  // runner.
  explicit HttpActionRunner(ProbeContext& probes);
  // Abandons requests in flight; their callbacks are not called.
  ~HttpActionRunner();
  HttpActionRunner(const HttpActionRunner&) = delete;
  HttpActionRunner& operator=(const HttpActionRunner&) = delete;

  // Starts the request; `done` is called exactly once, later, on the loop (also when
  // the request cannot be started). `exit_code` stays unset; the HTTP status is in
  // `error` when it was not expected.
  void Start(HttpActionRequest request, Callback done);

  int Running() const { return static_cast<int>(transfers_.size()); }

 private:
  struct Transfer;
  void Finish(uint64_t id, int curl_code);

  ProbeContext& probes_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace rollguard
