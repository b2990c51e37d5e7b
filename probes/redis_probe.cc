#include "probes/redis_probe.h"

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "probes/probe_keys.h"
#include "probes/redis_call.h"
#include "probes/tcp_probe.h"

namespace rollguard {

namespace {

struct RedisOptions {
  Duration timeout;
  TcpAddress address;
  std::string password;  // secret; empty when not configured
  int db = 0;
  std::vector<std::string> command = {"PING"};
};

std::optional<double> ParseNumber(std::string_view text) {
  if (text.empty()) return std::nullopt;
  const std::string copy(text);
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || std::isspace(static_cast<unsigned char>(copy[0]))) {
    return std::nullopt;
  }
  return value;
}

// One RedisCall per run: the call does the connecting, AUTH, SELECT and timeout; the
// probe turns its reply into fields.
class RedisProbe final : public Probe {
 public:
  RedisProbe(std::shared_ptr<const RedisOptions> options, sd_event* event)
      : options_(std::move(options)), call_(event) {}

  void Start(ProbeDone done) override {
    RedisTarget target;
    target.host = options_->address.host;
    target.port = options_->address.port;
    target.password = options_->password;
    target.db = options_->db;
    target.timeout = options_->timeout;
    call_.Start(target, options_->command, [done = std::move(done)](RedisCallResult call) {
      ProbeResult result;
      result.latency_seconds = std::chrono::duration<double>(call.elapsed).count();
      if (!call.error.empty()) {
        result.error = std::move(call.error);
        done(std::move(result));
        return;
      }
      result.up = true;
      std::optional<double> value;
      if (call.value.type == RedisValue::Type::kInteger) {
        value = static_cast<double>(call.value.integer);
      } else if (call.value.type == RedisValue::Type::kString ||
                 call.value.type == RedisValue::Type::kStatus) {
        value = ParseNumber(call.value.text);
      }
      if (value) result.fields["value"] = *value;
      done(std::move(result));  // last: may restart or destroy this probe
    });
  }

  void Cancel() override { call_.Cancel(); }

 private:
  std::shared_ptr<const RedisOptions> options_;
  RedisCall call_;
};

class RedisProbeConfig final : public ProbeConfig {
 public:
  RedisProbeConfig(ProbeSpec spec, std::shared_ptr<const RedisOptions> options)
      : ProbeConfig(std::move(spec)), options_(std::move(options)) {}

  std::unique_ptr<Probe> Instantiate(ProbeContext& context) const override {
    return std::make_unique<RedisProbe>(options_, context.event());
  }

 private:
  std::shared_ptr<const RedisOptions> options_;
};

}  // namespace

std::shared_ptr<const ProbeConfig> ParseRedisProbe(ProbeSpec spec, ProbeKeys& keys) {
  auto options = std::make_shared<RedisOptions>();
  options->timeout = spec.timeout;
  if (const IniEntry* entry = keys.Required("address")) {
    if (auto address = ParseTcpAddress(entry->value)) {
      options->address = *address;
    } else {
      keys.ErrorAt(*entry, "expected host:port or [ipv6]:port with a port from 1 to 65535, got " +
                               Quoted(entry->value));
    }
  }
  if (std::optional<std::string> password = keys.Secret("password_file")) {
    options->password = *password;
  }
  if (const IniEntry* entry = keys.Single("db")) {
    const std::string_view text = entry->value;
    int db = -1;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), db);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() || db < 0) {
      keys.ErrorAt(*entry, "expected a database number (0, 1, ...), got " + Quoted(text));
    } else {
      options->db = db;
    }
  }
  if (const IniEntry* entry = keys.Single("command")) {
    SplitCommandResult split = SplitCommandLine(entry->value);
    if (!split.error.empty()) {
      keys.ErrorAt(*entry, "expected a Redis command such as PING or \"GET key\", got " +
                               Quoted(entry->value) + " (" + split.error + ")");
    } else {
      options->command = std::move(split.argv);
    }
  }
  if (keys.has_errors()) return nullptr;
  return std::make_shared<RedisProbeConfig>(std::move(spec), std::move(options));
}

}  // namespace rollguard
