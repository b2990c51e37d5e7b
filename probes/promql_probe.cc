#include "probes/promql_probe.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/curl_multi.h"
#include "probes/deferred_call.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

struct PromqlOptions {
  std::string server_name;  // for messages: "default" or the [prometheus NAME]
  std::string endpoint;     // <url>/api/v1/query
  std::string query;
  Duration timeout;           // the shorter of the server's and the probe's
  std::string authorization;  // "Authorization: Bearer ..." or empty; secret
};

// A sample value as Prometheus sends it: a string holding a float, "NaN", "+Inf", "-Inf".
std::optional<double> SampleValue(const nlohmann::json& pair) {
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) return std::nullopt;
  const std::string& text = pair[1].get_ref<const std::string&>();
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text == "+Inf") return std::numeric_limits<double>::infinity();
  if (text == "-Inf") return -std::numeric_limits<double>::infinity();
  double value = 0;
  const char* begin = text.data() + (StartsWith(text, "+") ? 1 : 0);
  const auto [end, error] = std::from_chars(begin, text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || end == begin) {
    return std::nullopt;
  }
  return value;
}

void AddAggregates(const std::vector<double>& samples, ProbeResult& result) {
  result.fields["count"] = static_cast<double>(samples.size());
  if (samples.empty()) return;
  double sum = 0;
  std::optional<double> min;
  std::optional<double> max;
  for (double sample : samples) {
    sum += sample;
    if (std::isnan(sample)) continue;
    min = min ? std::min(*min, sample) : sample;
    max = max ? std::max(*max, sample) : sample;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  result.fields["sum"] = sum;
  result.fields["min"] = min.value_or(nan);
  result.fields["max"] = max.value_or(nan);
  result.fields["value"] = samples.size() == 1 ? samples.front() : max.value_or(nan);
}

class PromqlProbe final : public Probe {
 public:
  PromqlProbe(std::shared_ptr<const PromqlOptions> options, CurlMulti& curl)
      : options_(std::move(options)), curl_(curl) {}
  ~PromqlProbe() override { Cancel(); }

  void Start(ProbeDone done) override {
    Cancel();
    done_ = std::move(done);
    transfer_ = std::make_unique<Transfer>();
    transfer_->easy = curl_easy_init();
    if (transfer_->easy == nullptr || !Configure(*transfer_) ||
        !curl_.Add(transfer_->easy, [this](int code) { OnDone(static_cast<CURLcode>(code)); })) {
      transfer_.reset();
      deferred_.Schedule(curl_.event(), [this] {
        ProbeResult result;
        result.error = "could not start the query (libcurl refused it; out of memory?)";
        Finish(std::move(result));
      });
    }
  }

  void Cancel() override {
    deferred_.Cancel();
    if (transfer_ != nullptr) {
      curl_.Remove(transfer_->easy);
      transfer_.reset();
    }
    done_ = nullptr;
  }

 private:
  struct Transfer {
    ~Transfer() {
      if (easy != nullptr) curl_easy_cleanup(easy);
      curl_slist_free_all(headers);
    }
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string form;
    std::string body;
    bool body_over_cap = false;
    char error[CURL_ERROR_SIZE] = {};
  };

  static size_t OnBody(char* data, size_t size, size_t count, void* opaque) {
    auto* transfer = static_cast<Transfer*>(opaque);
    const size_t bytes = size * count;
    if (transfer->body.size() + bytes > kPromqlMaxBodyBytes) {
      transfer->body_over_cap = true;
      return CURL_WRITEFUNC_ERROR;
    }
    transfer->body.append(data, bytes);
    return bytes;
  }

  bool Configure(Transfer& transfer) const {
    CURL* easy = transfer.easy;
    char* query =
        curl_easy_escape(easy, options_->query.data(), static_cast<int>(options_->query.size()));
    if (query == nullptr) return false;
    const double seconds = std::chrono::duration<double>(options_->timeout).count();
    transfer.form = "query=" + std::string(query) + "&timeout=" + std::to_string(seconds);
    curl_free(query);

    bool ok = true;
    auto set = [&ok](CURLcode code) { ok = ok && code == CURLE_OK; };
    set(curl_easy_setopt(easy, CURLOPT_URL, options_->endpoint.c_str()));
    set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
    set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
    set(curl_easy_setopt(easy, CURLOPT_PROXY, ""));
    set(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                         static_cast<long>(options_->timeout.count())));  // NOLINT(runtime/int)
    set(curl_easy_setopt(easy, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION));
    set(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error));
    set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &PromqlProbe::OnBody));
    set(curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer));
    set(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(transfer.form.size())));
    set(curl_easy_setopt(easy, CURLOPT_POSTFIELDS, transfer.form.c_str()));
    transfer.headers = curl_slist_append(transfer.headers, "Expect:");
    if (transfer.headers == nullptr) return false;
    transfer.headers = curl_slist_append(transfer.headers, "Accept: application/json");
    if (!options_->authorization.empty()) {
      transfer.headers = curl_slist_append(transfer.headers, options_->authorization.c_str());
    }
    if (transfer.headers == nullptr) return false;
    set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer.headers));
    return ok;
  }

  void OnDone(CURLcode code) {
    ProbeResult result = BuildResult(code);
    transfer_.reset();
    Finish(std::move(result));
  }

  void Finish(ProbeResult result) {
    ProbeDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));  // last: may restart or destroy this probe
  }

  std::string Where() const { return "Prometheus " + options_->server_name; }

  std::string TransferFailure(CURLcode code) const {
    const Transfer& transfer = *transfer_;
    const std::string detail =
        transfer.error[0] != '\0' ? transfer.error : curl_easy_strerror(code);
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        return Where() + " did not answer within " + FormatDuration(options_->timeout);
      case CURLE_COULDNT_CONNECT:
        return "cannot reach " + Where() + " at " + options_->endpoint + ": " + detail;
      case CURLE_WRITE_ERROR:
        if (transfer.body_over_cap) {
          return Where() + " answered with more than " + std::to_string(kPromqlMaxBodyBytes >> 20) +
                 " MiB";
        }
        return detail;
      default:
        return "query to " + Where() + " failed: " + detail;
    }
  }

  ProbeResult BuildResult(CURLcode code) const {
    const Transfer& transfer = *transfer_;
    ProbeResult result;
    curl_off_t micros = 0;
    curl_easy_getinfo(transfer.easy, CURLINFO_TOTAL_TIME_T, &micros);
    result.latency_seconds = static_cast<double>(micros) / 1e6;
    if (code != CURLE_OK) {
      result.error = TransferFailure(code);
      return result;
    }
    long status = 0;  // NOLINT(runtime/int): curl's type
    curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
    const nlohmann::json document =
        nlohmann::json::parse(transfer.body, /*cb=*/nullptr, /*allow_exceptions=*/false);
    const bool is_prometheus =
        document.is_object() && document.contains("status") && document["status"].is_string();
    if (!is_prometheus) {
      result.error = Where() + " answered HTTP " + std::to_string(status) +
                     (status >= 200 && status < 300 ? " without a Prometheus API document" : "");
      return result;
    }
    if (document["status"] != "success") {
      const std::string type = document.value("errorType", std::string("unknown"));
      const std::string message = document.value("error", std::string());
      result.config_error = type == "bad_data" || type == "execution";
      result.error = Where() + " rejected the query (" + type + "): " + message;
      return result;
    }
    const nlohmann::json& data = document.value("data", nlohmann::json::object());
    const std::string type = data.value("resultType", std::string());
    const nlohmann::json& answer = data.contains("result") ? data["result"] : nlohmann::json();
    if (type == "scalar") {
      const std::optional<double> value = SampleValue(answer);
      if (!value) {
        result.error = Where() + " sent a malformed scalar";
        return result;
      }
      AddAggregates({*value}, result);
    } else if (type == "vector" && answer.is_array()) {
      std::vector<double> samples;
      for (const nlohmann::json& sample : answer) {
        const std::optional<double> value = sample.is_object() && sample.contains("value")
                                                ? SampleValue(sample["value"])
                                                : std::nullopt;
        if (!value) {
          result.error = Where() + " sent a malformed vector sample";
          return result;
        }
        samples.push_back(*value);
      }
      AddAggregates(samples, result);
    } else if (type == "matrix" || type == "string") {
      result.config_error = true;
      result.error = "the query returns a " +
                     std::string(type == "matrix" ? "range vector" : "string") +
                     "; expected an instant vector or a scalar";
      return result;
    } else {
      result.error = Where() + " sent an unknown resultType " + Quoted(type);
      return result;
    }
    result.up = true;
    return result;
  }

  std::shared_ptr<const PromqlOptions> options_;
  CurlMulti& curl_;
  std::unique_ptr<Transfer> transfer_;
  DeferredCall deferred_;
  ProbeDone done_;
};

class PromqlProbeConfig final : public ProbeConfig {
 public:
  PromqlProbeConfig(ProbeSpec spec, std::shared_ptr<const PromqlOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<PromqlProbe>(options_, context.curl());
  }

 private:
  std::shared_ptr<const PromqlOptions> options_;
};

}  // namespace

std::shared_ptr<const ProbeConfig> ParsePromqlProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<PromqlOptions>();
  const std::vector<PrometheusServer>& servers = keys.context().prometheus_servers;
  const IniEntry* server_entry = keys.Single("server");
  const std::string wanted = server_entry != nullptr ? server_entry->value : "";
  const auto server = std::find_if(servers.begin(), servers.end(),
                                   [&](const PrometheusServer& s) { return s.name == wanted; });
  if (server == servers.end()) {
    std::string known;
    for (const PrometheusServer& s : servers) {
      if (!s.name.empty()) known += (known.empty() ? "" : ", ") + s.name;
    }
    const std::string message = known.empty() ? "no [prometheus NAME] section is configured"
                                              : "the configured servers are " + known;
    if (server_entry != nullptr) {
      keys.ErrorAt(*server_entry, "expected the name of a [prometheus NAME] section (" + message +
                                      "), got " + Quoted(wanted));
    } else {
      keys.Error(
          "missing key \"server\": there is no unnamed [prometheus] section to default to "
          "(add one, or set server = NAME; " +
          message + ")");
    }
  } else {
    options->server_name = server->name.empty() ? "(default)" : server->name;
    options->endpoint = server->url + "/api/v1/query";
    options->timeout = std::min(server->timeout, spec.timeout);
    if (!server->bearer_token.empty()) {
      options->authorization = "Authorization: Bearer " + server->bearer_token;
    }
  }
  if (const IniEntry* query = keys.Required("query")) {
    if (Trim(query->value).empty()) {
      keys.ErrorAt(*query, "expected a PromQL expression, got an empty value");
    } else {
      options->query = std::string(Trim(query->value));
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<PromqlProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
