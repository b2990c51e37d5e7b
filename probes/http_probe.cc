#include "probes/http_probe.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/asn1.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <regex.h>
#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/curl_multi.h"
#include "probes/deferred_call.h"
#include "probes/plain_http.h"
#include "probes/probe_keys.h"

namespace rollguard {
namespace {

// expect_body: POSIX extended regex (glibc's matcher does not recurse per input byte, so a
// 1 MiB body cannot exhaust the stack the way std::regex can).
class BodyRegex {
 public:
  BodyRegex() = default;
  ~BodyRegex() {
    if (compiled_) regfree(&regex_);
  }
  BodyRegex(const BodyRegex&) = delete;
  BodyRegex& operator=(const BodyRegex&) = delete;

  // Empty on success, else what is wrong with the pattern.
  std::string Compile(const std::string& pattern) {
    const int code = regcomp(&regex_, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
    if (code == 0) {
      compiled_ = true;
      return "";
    }
    char message[256];
    regerror(code, &regex_, message, sizeof(message));
    return message;
  }

  bool Matches(const std::string& text) const {
    regmatch_t range[1];
    range[0].rm_so = 0;
    range[0].rm_eo = static_cast<regoff_t>(text.size());
    return regexec(&regex_, text.data(), 1, range, REG_STARTEND) == 0;
  }

 private:
  regex_t regex_{};
  bool compiled_ = false;
};

struct StatusRange {
  int low;
  int high;
};

std::optional<std::vector<StatusRange>> ParseStatusRanges(std::string_view text) {
  std::vector<StatusRange> ranges;
  auto parse_code = [](std::string_view digits) -> int {
    digits = Trim(digits);
    if (digits.size() != 3) return -1;
    int code = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return -1;
      code = code * 10 + (c - '0');
    }
    return code >= 100 && code <= 599 ? code : -1;
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = Trim(text.substr(start, comma - start));
    const size_t dash = item.find('-');
    StatusRange range{};
    if (dash == std::string_view::npos) {
      range.low = range.high = parse_code(item);
    } else {
      range.low = parse_code(item.substr(0, dash));
      range.high = parse_code(item.substr(dash + 1));
    }
    if (range.low < 0 || range.high < 0 || range.low > range.high) return std::nullopt;
    ranges.push_back(range);
    start = comma + 1;
  }
  return ranges;
}

bool IsToken(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c))) {
      return false;
    }
  }
  return true;
}

// The keys most probes leave unset, apart: an unset one costs a probe nothing. Options
// are kept per probe for as long as the configuration runs (bench/RESULTS.md).
struct HttpExtras {
  std::optional<std::string> body;
  std::shared_ptr<const BodyRegex> expect_body;
  std::string expect_body_text;
  std::string ca_file;

  bool empty() const { return !body && expect_body == nullptr && ca_file.empty(); }
};

struct HttpOptions {
  Duration timeout;
  // Both empty when `plain` is set: only libcurl's runs read them.
  std::string url;
  std::string origin;  // "scheme://host:port" of `url`: runs to it queue together
  std::string method = "GET";
  // The request headers ("Name: value" for each `header` key and the bearer token, which
  // may be secrets) as curl takes them, built once: curl only reads the list, so every
  // run shares it, and probes without headers of their own all share one. Null when out
  // of memory.
  std::shared_ptr<const curl_slist> header_list;
  std::vector<StatusRange> expect_status = {{200, 299}};
  std::string expect_status_text = "200-299";
  bool follow_redirects = false;
  bool tls_verify = true;
  std::unique_ptr<const HttpExtras> extras;  // null when every one is unset
  // The request PlainHttp sends instead of libcurl, when the probe needs nothing more
  // (PlainRequest); null otherwise.
  std::shared_ptr<const PlainHttpRequest> plain;

  const std::optional<std::string>& body() const {
    static const std::optional<std::string> kNone;
    return extras != nullptr ? extras->body : kNone;
  }
};

// The request headers: `headers` after an empty "Expect:", which stops curl waiting for
// "100 Continue" on larger bodies (a second per run). Null when out of memory.
curl_slist* BuildHeaderList(const std::vector<std::string>& headers) {
  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  for (const std::string& header : headers) {
    if (list == nullptr) return nullptr;
    curl_slist* appended = curl_slist_append(list, header.c_str());
    if (appended == nullptr) {
      curl_slist_free_all(list);
      return nullptr;
    }
    list = appended;
  }
  return list;
}

std::shared_ptr<const curl_slist> OwnedHeaderList(curl_slist* list) {
  if (list == nullptr) return nullptr;
  return std::shared_ptr<const curl_slist>(
      list, [](const curl_slist* owned) { curl_slist_free_all(const_cast<curl_slist*>(owned)); });
}

// BuildHeaderList, shared: most probes send no headers of their own, and a list of their
// own (two allocations each) was paid once per probe.
std::shared_ptr<const curl_slist> SharedHeaderList(const std::vector<std::string>& headers) {
  if (!headers.empty()) return OwnedHeaderList(BuildHeaderList(headers));
  static const std::shared_ptr<const curl_slist> kDefault = OwnedHeaderList(BuildHeaderList({}));
  return kDefault != nullptr ? kDefault : OwnedHeaderList(BuildHeaderList({}));
}

std::string FormatMiB(size_t bytes) {
  return bytes % (size_t{1} << 20) == 0 ? std::to_string(bytes >> 20) + " MiB"
                                        : std::to_string(bytes) + " bytes";
}

// Seconds until the peer's leaf certificate expires, read from the live TLS session (so it
// also works on a reused connection, where CURLINFO_CERTINFO is empty).
std::optional<double> PeerCertificateSecondsLeft(CURL* easy) {
  const curl_tlssessioninfo* session = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &session) != CURLE_OK || session == nullptr ||
      session->backend != CURLSSLBACKEND_OPENSSL || session->internals == nullptr) {
    return std::nullopt;
  }
  X509* certificate = SSL_get0_peer_certificate(static_cast<SSL*>(session->internals));
  if (certificate == nullptr) return std::nullopt;
  int days = 0;
  int seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(certificate)) != 1) {
    return std::nullopt;
  }
  return static_cast<double>(days) * 86400.0 + static_cast<double>(seconds);
}

void FlattenJson(const nlohmann::json& value, const std::string& path, int depth,
                 std::map<std::string, FieldValue>& fields) {
  if (fields.size() >= kHttpMaxJsonFields || depth > kHttpMaxJsonDepth) return;
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      for (auto it = value.begin(); it != value.end(); ++it) {
        FlattenJson(it.value(), path + "." + it.key(), depth + 1, fields);
      }
      break;
    case nlohmann::json::value_t::array: {
      size_t index = 0;
      for (const nlohmann::json& item : value) {
        FlattenJson(item, path + "." + std::to_string(index++), depth + 1, fields);
      }
      break;
    }
    case nlohmann::json::value_t::boolean:
      fields[path] = value.get<bool>() ? 1.0 : 0.0;
      break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      fields[path] = value.get<double>();
      break;
    case nlohmann::json::value_t::string:
      fields[path] = value.get<std::string>();
      break;
    default:  // null, binary, discarded
      break;
  }
}

void AddJsonFields(const std::string& body, std::map<std::string, FieldValue>& fields) {
  const std::string_view trimmed = Trim(body);
  if (trimmed.empty() || (trimmed.front() != '{' && trimmed.front() != '[')) return;
  const nlohmann::json document =
      nlohmann::json::parse(trimmed, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return;
  FlattenJson(document, "json", 0, fields);
}

// What every answer is judged by, however it came: `result` gets body_bytes and the
// json.* fields, and is up when the status is expected and the body matches.
void JudgeAnswer(const HttpOptions& options, long status,  // NOLINT(runtime/int): curl's type
                 const std::string& body, ProbeResult& result) {
  result.fields["body_bytes"] = static_cast<double>(body.size());
  AddJsonFields(body, result.fields);

  bool status_ok = false;
  for (const StatusRange& range : options.expect_status) {
    if (status >= range.low && status <= range.high) status_ok = true;
  }
  if (!status_ok) {
    result.error = "status " + std::to_string(status) + " not in " + options.expect_status_text;
    return;
  }
  const HttpExtras* extras = options.extras.get();
  if (extras != nullptr && extras->expect_body != nullptr && !extras->expect_body->Matches(body)) {
    result.error = "body does not match /" + extras->expect_body_text + "/";
    return;
  }
  result.up = true;
}

std::string TimedOut(Duration timeout, const std::string& where) {
  return "timed out after " + FormatDuration(timeout) + where;
}

std::string DescribePlainFailure(const HttpOptions& options, const PlainHttpOutcome& outcome) {
  using Failure = PlainHttpOutcome::Failure;
  using Phase = PlainHttpOutcome::Phase;
  switch (outcome.failure) {
    case Failure::kTimeout:
      switch (outcome.phase) {
        case Phase::kConnecting:
          return TimedOut(options.timeout, " while connecting");
        case Phase::kWaiting:
          return TimedOut(options.timeout, " waiting for the response");
        case Phase::kReading:
          return TimedOut(options.timeout, " reading the response (" +
                                               std::to_string(outcome.body.size()) +
                                               " body bytes so far)");
      }
      break;
    case Failure::kConnect:
      if (outcome.connect_errno == ECONNREFUSED) return "connection refused";
      return std::string("could not connect: ") + std::strerror(outcome.connect_errno);
    case Failure::kClosed:
      if (!outcome.received) return "the server closed the connection without answering";
      return "the server closed the connection before the response was complete" +
             (outcome.detail.empty() ? std::string() : " (" + outcome.detail + ")");
    case Failure::kBodyTooLarge:
      return "response body exceeds the " + FormatMiB(kHttpMaxBodyBytes) + " cap";
    case Failure::kMalformed:
    case Failure::kResources:
      return outcome.detail;
    case Failure::kNone:
      break;
  }
  return outcome.detail;
}

// 0 for a run that never ran (a null handle).
double InfoSeconds(CURL* easy, CURLINFO what) {
  if (easy == nullptr) return 0;
  curl_off_t micros = 0;
  if (curl_easy_getinfo(easy, what, &micros) != CURLE_OK) return 0;
  return static_cast<double>(micros) / 1e6;
}

class HttpProbe final : public Probe {
 public:
  // Exactly one of `curl` and `plain` is set: the engine the probe's runs take.
  HttpProbe(std::shared_ptr<const HttpOptions> options, CurlMulti* curl, PlainHttp* plain)
      : options_(std::move(options)), curl_(curl), plain_(plain) {}
  ~HttpProbe() override { Cancel(); }

  void Start(ProbeDone done) override;
  void Cancel() override;

 private:
  // One run's state; heap-allocated so the pointers curl holds stay put, and the run's key
  // in CurlMulti. Its easy handle is CurlMulti's, lent from when the run's turn comes until
  // it is done.
  struct Transfer {
    CURL* easy = nullptr;
    std::string body;
    bool body_over_cap = false;
    std::optional<double> cert_expiry;
    char error[CURL_ERROR_SIZE] = {};
  };

  static size_t OnBody(char* data, size_t size, size_t count, void* transfer);
  static size_t OnHeader(char* data, size_t size, size_t count, void* transfer);
  bool Configure(CURL* easy, Transfer& transfer) const;
  void OnDone(CURL* easy, int code);
  void OnPlainDone(PlainHttpOutcome outcome);
  // Hands the run's result to its ProbeDone, which is cleared first.
  void Report(ProbeResult result);
  ProbeResult BuildResult(CURLcode code) const;
  std::string DescribeFailure(CURLcode code) const;

  std::shared_ptr<const HttpOptions> options_;
  CurlMulti* curl_;   // unless options_->plain is set
  PlainHttp* plain_;  // when options_->plain is set
  std::unique_ptr<Transfer> transfer_;
  DeferredCall deferred_;
  ProbeDone done_;
};

size_t HttpProbe::OnBody(char* data, size_t size, size_t count, void* opaque) {
  auto* transfer = static_cast<Transfer*>(opaque);
  const size_t bytes = size * count;
  if (transfer->body.size() + bytes > kHttpMaxBodyBytes) {
    transfer->body_over_cap = true;
    return CURL_WRITEFUNC_ERROR;
  }
  transfer->body.append(data, bytes);
  return bytes;
}

size_t HttpProbe::OnHeader(char* data, size_t size, size_t count, void* opaque) {
  auto* transfer = static_cast<Transfer*>(opaque);
  const size_t bytes = size * count;
  // The status line starts every response (each redirect hop too): the TLS session is
  // up by then, and the last one read belongs to the final response.
  if (StartsWith(std::string_view(data, bytes), "HTTP/")) {
    transfer->cert_expiry = PeerCertificateSecondsLeft(transfer->easy);
  }
  return bytes;
}

bool HttpProbe::Configure(CURL* easy, Transfer& transfer) const {
  const HttpOptions& options = *options_;
  transfer.easy = easy;
  bool ok = true;
  auto set = [&ok](CURLcode code) { ok = ok && code == CURLE_OK; };
  set(curl_easy_setopt(easy, CURLOPT_URL, options.url.c_str()));
  set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(easy, CURLOPT_PROXY, ""));  // probe the target, not a proxy
  set(curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, options.follow_redirects ? 1L : 0L));
  set(curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(kHttpMaxRedirects)));
  set(curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                       static_cast<curl_off_t>(kHttpMaxBodyBytes)));
  set(curl_easy_setopt(easy, CURLOPT_USERAGENT, "rollguard/" ROLLGUARD_VERSION));
  set(curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error));
  set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &HttpProbe::OnBody));
  set(curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer));
  set(curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &HttpProbe::OnHeader));
  set(curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer));
  set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, options.tls_verify ? 1L : 0L));
  set(curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, options.tls_verify ? 2L : 0L));
  if (options.extras != nullptr && !options.extras->ca_file.empty())
    set(curl_easy_setopt(easy, CURLOPT_CAINFO, options.extras->ca_file.c_str()));

  const std::optional<std::string>& body = options.body();
  if (body) {
    set(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size())));
    set(curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body->c_str()));
  } else if (options.method == "POST") {
    set(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{0}));
    set(curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, ""));
  }
  if (options.method == "HEAD") {
    set(curl_easy_setopt(easy, CURLOPT_NOBODY, 1L));
  } else if (options.method != "POST" && (options.method != "GET" || body)) {
    set(curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, options.method.c_str()));
  }

  if (options.header_list == nullptr) return false;
  // curl takes a non-const list and only reads it.
  set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER,
                       const_cast<curl_slist*>(options.header_list.get())));
  return ok;
}

void HttpProbe::Start(ProbeDone done) {
  Cancel();
  done_ = std::move(done);
  if (plain_ != nullptr) {
    // Never fails: a run under this key cannot be in flight after Cancel().
    plain_->Start(this, options_->plain, options_->timeout,
                  [this](PlainHttpOutcome outcome) { OnPlainDone(std::move(outcome)); });
    return;
  }
  transfer_ = std::make_unique<Transfer>();
  Transfer* transfer = transfer_.get();
  if (!curl_->AddQueued(
          transfer, options_->origin, options_->timeout,
          [this, transfer](CURL* easy) { return Configure(easy, *transfer); },
          [this](CURL* easy, int code) { OnDone(easy, code); })) {
    transfer_.reset();
    deferred_.Schedule(curl_->event(), [this] {
      ProbeResult result;
      result.error = "could not start the request (libcurl refused it; out of memory?)";
      Report(std::move(result));
    });
  }
}

void HttpProbe::Cancel() {
  deferred_.Cancel();
  if (plain_ != nullptr) plain_->Cancel(this);
  if (transfer_ != nullptr) {
    curl_->Remove(transfer_.get());
    transfer_.reset();
  }
  done_ = nullptr;
}

void HttpProbe::OnDone(CURL* easy, int code) {
  transfer_->easy = easy;  // null when the run never got its turn
  ProbeResult result = BuildResult(static_cast<CURLcode>(code));
  transfer_.reset();
  Report(std::move(result));
}

void HttpProbe::Report(ProbeResult result) {
  ProbeDone done = std::move(done_);
  done_ = nullptr;
  // Last: `done` may start the next run or destroy this probe.
  if (done) done(std::move(result));
}

void HttpProbe::OnPlainDone(PlainHttpOutcome outcome) {
  ProbeResult result;
  result.latency_seconds = outcome.total_seconds;
  // The same fields as a libcurl run: an address needs no lookup (curl reports the few
  // microseconds it spends parsing one), a reused connection no connect.
  result.fields["phase.dns"] = 0.0;
  if (outcome.new_connection && outcome.phase != PlainHttpOutcome::Phase::kConnecting) {
    result.fields["phase.connect"] = outcome.connect_seconds;
  }
  if (outcome.received) result.fields["phase.first_byte"] = outcome.first_byte_seconds;
  if (outcome.status > 0) result.fields["status"] = static_cast<double>(outcome.status);
  if (outcome.failure != PlainHttpOutcome::Failure::kNone) {
    result.up = false;
    result.error = DescribePlainFailure(*options_, outcome);
  } else {
    JudgeAnswer(*options_, outcome.status, outcome.body, result);
  }
  Report(std::move(result));
}

std::string HttpProbe::DescribeFailure(CURLcode code) const {
  const Transfer& transfer = *transfer_;
  CURL* easy = transfer.easy;
  const std::string detail = transfer.error[0] != '\0' ? transfer.error : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: {
      std::string where;
      if (InfoSeconds(easy, CURLINFO_CONNECT_TIME_T) == 0) {
        where = " while connecting";
      } else if (InfoSeconds(easy, CURLINFO_STARTTRANSFER_TIME_T) == 0) {
        where = " waiting for the response";
      } else {
        where = " reading the response (" + std::to_string(transfer.body.size()) +
                " body bytes so far)";
      }
      return TimedOut(options_->timeout, where);
    }
    case CURLE_COULDNT_CONNECT: {
      long os_errno = 0;  // NOLINT(runtime/int): curl's type
      if (easy != nullptr) curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
      if (os_errno == ECONNREFUSED) return "connection refused";
      return "could not connect: " + detail;
    }
    case CURLE_COULDNT_RESOLVE_HOST:
      return "DNS lookup failed: " + detail;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      if (transfer.body_over_cap || code == CURLE_FILESIZE_EXCEEDED) {
        return "response body exceeds the " + FormatMiB(kHttpMaxBodyBytes) + " cap";
      }
      return detail;
    case CURLE_TOO_MANY_REDIRECTS:
      return "more than " + std::to_string(kHttpMaxRedirects) + " redirects";
    case CURLE_UNSUPPORTED_PROTOCOL:
      return "refused a non-HTTP(S) URL: " + detail;
    case CURLE_PEER_FAILED_VERIFICATION:
      return "TLS certificate not trusted: " + detail;
    case CURLE_SSL_CONNECT_ERROR:
      return "TLS handshake failed: " + detail;
    case CURLE_GOT_NOTHING:
      return "the server closed the connection without answering";
    default:
      return detail;
  }
}

ProbeResult HttpProbe::BuildResult(CURLcode code) const {
  const Transfer& transfer = *transfer_;
  CURL* easy = transfer.easy;
  ProbeResult result;
  result.latency_seconds = InfoSeconds(easy, CURLINFO_TOTAL_TIME_T);

  const double dns = InfoSeconds(easy, CURLINFO_NAMELOOKUP_TIME_T);
  const double connect = InfoSeconds(easy, CURLINFO_CONNECT_TIME_T);
  const double tls = InfoSeconds(easy, CURLINFO_APPCONNECT_TIME_T);
  const double first_byte = InfoSeconds(easy, CURLINFO_STARTTRANSFER_TIME_T);
  const double pretransfer = InfoSeconds(easy, CURLINFO_PRETRANSFER_TIME_T);
  result.fields["phase.dns"] = dns;
  if (connect > 0) result.fields["phase.connect"] = connect - dns;
  if (tls > 0) result.fields["phase.tls"] = tls - connect;
  if (first_byte > 0) result.fields["phase.first_byte"] = first_byte - pretransfer;
  if (transfer.cert_expiry) result.fields["cert_expiry"] = *transfer.cert_expiry;

  long status = 0;  // NOLINT(runtime/int): curl's type
  if (easy != nullptr) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  if (status > 0) result.fields["status"] = static_cast<double>(status);

  if (code != CURLE_OK) {
    result.up = false;
    result.error = DescribeFailure(code);
    return result;
  }

  JudgeAnswer(*options_, status, transfer.body, result);
  return result;
}

class HttpProbeConfig final : public ProbeConfig {
 public:
  HttpProbeConfig(ProbeSpec spec, std::shared_ptr<const HttpOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    if (options_->plain != nullptr) {
      return std::make_unique<HttpProbe>(options_, nullptr, &context.plain_http());
    }
    return std::make_unique<HttpProbe>(options_, &context.curl(), nullptr);
  }

 private:
  std::shared_ptr<const HttpOptions> options_;
};

// The parts of the url PlainRequest needs.
struct UrlParts {
  std::string scheme;
  std::string host;  // an IPv6 address in brackets
  std::string port;  // the scheme's default when the url has none
  std::string path;
  std::optional<std::string> query;
  bool credentials = false;  // user (and password) in the url
};

void ParseUrl(ProbeKeys& keys, HttpOptions& options, UrlParts& parts) {
  const IniEntry* entry = keys.Required("url");
  if (entry == nullptr) return;
  const std::optional<KeyValue> url = keys.Resolve(*entry);
  if (!url) return;
  CURLU* handle = curl_url();
  auto get = [handle](CURLUPart part, unsigned flags) -> std::optional<std::string> {
    char* text = nullptr;
    if (curl_url_get(handle, part, &text, flags) != CURLUE_OK) return std::nullopt;
    std::string copy = text;
    curl_free(text);
    return copy;
  };
  std::optional<std::string> scheme, host, port;
  if (handle != nullptr && curl_url_set(handle, CURLUPART_URL, url->text.c_str(), 0) == CURLUE_OK) {
    scheme = get(CURLUPART_SCHEME, 0);
    host = get(CURLUPART_HOST, 0);
    port = get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  }
  const bool http = scheme && host && port && (*scheme == "http" || *scheme == "https");
  if (http) {
    options.origin = *scheme + "://" + *host + ":" + *port;
    parts.scheme = *scheme;
    parts.host = *host;
    parts.port = *port;
    parts.path = get(CURLUPART_PATH, 0).value_or("/");
    parts.query = get(CURLUPART_QUERY, 0);
    parts.credentials = get(CURLUPART_USER, 0).has_value();
  }
  curl_url_cleanup(handle);
  if (!http) {
    keys.ErrorAt(*entry, "expected an http:// or https:// URL, got " + url->shown);
    return;
  }
  options.url = url->text;
}

void ParseHeaders(ProbeKeys& keys, std::vector<std::string>& headers) {
  for (const IniEntry* entry : keys.All("header")) {
    const size_t colon = entry->value.find(':');
    const std::string_view name = colon == std::string::npos
                                      ? std::string_view()
                                      : Trim(std::string_view(entry->value).substr(0, colon));
    if (!IsToken(name)) {
      keys.ErrorAt(*entry, "expected \"Name: value\", got " + Quoted(entry->value));
      continue;
    }
    const std::optional<KeyValue> value =
        keys.ResolveText(*entry, Trim(std::string_view(entry->value).substr(colon + 1)));
    if (!value) continue;
    // curl drops "Name:" (no value) from the request; "Name;" sends it empty.
    headers.push_back(value->text.empty() ? std::string(name) + ";"
                                          : std::string(name) + ": " + value->text);
  }
}

// Whether `name` is the name of one of `headers` ("Name: value" or "Name;"), in any case.
bool HasHeader(const std::vector<std::string>& headers, std::string_view name) {
  for (const std::string& header : headers) {
    if (header.size() > name.size() && strncasecmp(header.data(), name.data(), name.size()) == 0 &&
        (header[name.size()] == ':' || header[name.size()] == ';')) {
      return true;
    }
  }
  return false;
}

// The request PlainHttp sends for a probe that needs nothing libcurl adds: http:// to an
// IP address, GET or HEAD without a body, no credentials in the url, redirects not
// followed. The same request libcurl would send: its Host, User-Agent and Accept headers
// unless the probe sets its own, then the probe's headers. Null for any other probe.
std::shared_ptr<const PlainHttpRequest> PlainRequest(const HttpOptions& options,
                                                     const UrlParts& url,
                                                     const std::vector<std::string>& headers) {
  if (url.scheme != "http" || url.credentials || options.follow_redirects || options.body() ||
      (options.method != "GET" && options.method != "HEAD")) {
    return nullptr;
  }
  int port = 0;
  for (char c : url.port) {
    if (c < '0' || c > '9' || port > 65535) return nullptr;
    port = port * 10 + (c - '0');
  }
  if (port <= 0 || port > 65535) return nullptr;
  auto request = std::make_shared<PlainHttpRequest>();
  const bool v6 = url.host.size() > 2 && url.host.front() == '[' && url.host.back() == ']';
  if (v6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(static_cast<uint16_t>(port));
    const std::string inner = url.host.substr(1, url.host.size() - 2);
    if (inet_pton(AF_INET6, inner.c_str(), &address.sin6_addr) != 1) return nullptr;
    request->address.v6 = address;
    request->address_length = sizeof(address);
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, url.host.c_str(), &address.sin_addr) != 1) return nullptr;
    request->address.v4 = address;
    request->address_length = sizeof(address);
  }
  request->origin = url.host + ":" + url.port;
  request->head = options.method == "HEAD";
  std::string& bytes = request->bytes;
  bytes = options.method + " " + url.path + (url.query ? "?" + *url.query : "") + " HTTP/1.1\r\n";
  if (!HasHeader(headers, "Host")) {
    bytes += "Host: " + url.host + (port == 80 ? "" : ":" + url.port) + "\r\n";
  }
  if (!HasHeader(headers, "User-Agent")) bytes += "User-Agent: rollguard/" ROLLGUARD_VERSION "\r\n";
  if (!HasHeader(headers, "Accept")) bytes += "Accept: */*\r\n";
  for (const std::string& header : headers) {
    // "Name;" is curl's way to send a header with an empty value.
    const bool empty = header.find(':') == std::string::npos && header.back() == ';';
    bytes += empty ? header.substr(0, header.size() - 1) + ":" : header;
    bytes += "\r\n";
  }
  bytes += "\r\n";
  return request;
}

}  // namespace

std::shared_ptr<const ProbeConfig> ParseHttpProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<HttpOptions>();
  options->timeout = spec.timeout;
  UrlParts url;
  ParseUrl(keys, *options, url);

  if (const IniEntry* method = keys.Single("method")) {
    bool upper = IsToken(method->value);
    for (char c : method->value) upper = upper && c >= 'A' && c <= 'Z';
    if (upper) {
      options->method = method->value;
    } else {
      keys.ErrorAt(*method, "expected an upper-case HTTP method like GET or POST, got " +
                                Quoted(method->value));
    }
  }

  std::vector<std::string> headers;  // "Name: value", may hold secrets
  ParseHeaders(keys, headers);
  HttpExtras extras;
  if (const IniEntry* body = keys.Single("body")) {
    if (auto value = keys.Resolve(*body)) extras.body = value->text;
  }

  if (const IniEntry* expect = keys.Single("expect_status")) {
    if (auto ranges = ParseStatusRanges(expect->value)) {
      options->expect_status = std::move(*ranges);
      options->expect_status_text = expect->value;
    } else {
      keys.ErrorAt(*expect, "expected status codes and ranges like 200,204,300-399, got " +
                                Quoted(expect->value));
    }
  }

  if (const IniEntry* expect = keys.Single("expect_body")) {
    auto regex = std::make_shared<BodyRegex>();
    const std::string problem = regex->Compile(expect->value);
    if (problem.empty()) {
      extras.expect_body = std::move(regex);
      extras.expect_body_text = expect->value;
    } else {
      keys.ErrorAt(*expect, "expected a POSIX extended regular expression (" + problem + "), got " +
                                Quoted(expect->value));
    }
  }

  options->follow_redirects = keys.Bool("follow_redirects", false);
  options->tls_verify = keys.Bool("tls_verify", true);

  if (const IniEntry* ca_file = keys.Single("ca_file")) {
    const std::string path = keys.Path(ca_file->value);
    if (access(path.c_str(), R_OK) != 0) {
      keys.ErrorAt(*ca_file, "expected a readable PEM file, got " + Quoted(path) + " (" +
                                 std::strerror(errno) + ")");
    } else {
      extras.ca_file = path;
    }
  }

  if (std::optional<std::string> token = keys.Secret("bearer_token_file")) {
    headers.push_back("Authorization: Bearer " + *token);
  }

  if (keys.has_errors()) return nullptr;
  options->header_list = SharedHeaderList(headers);
  if (!extras.empty()) options->extras = std::make_unique<const HttpExtras>(std::move(extras));
  options->plain = PlainRequest(*options, url, headers);
  if (options->plain != nullptr) {
    // Only libcurl's runs read them.
    std::string().swap(options->url);
    std::string().swap(options->origin);
  }
  return std::make_shared<HttpProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
