#include "daemon/status_board.h"

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon/config.h"

namespace rollguard {
namespace {

using nlohmann::json;

// A config folder on disk, loaded by the real loader.
class ConfigFolder {
 public:
  explicit ConfigFolder(const std::string& rules) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "rollguard-status-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
    std::filesystem::create_directories(path_ + "/rules.d");
    Write("rollguard.conf",
          "[daemon]\ninclude = rules.d/*.rules\nlisten = off\nstate_dir = state\n");
    Write("rules.d/main.rules", rules);
  }
  ~ConfigFolder() { std::filesystem::remove_all(path_); }

  void Write(const std::string& relative, const std::string& text) {
    std::ofstream(path_ + "/" + relative) << text;
  }

  Config Load() {
    LoadedConfig loaded = LoadConfig(path_ + "/rollguard.conf");
    INFO(loaded.error.message);
    REQUIRE(loaded.config);
    return std::move(*loaded.config);
  }

 private:
  std::string path_;
};

const char kRules[] = R"(
[probe api]
type = http
url = http://user:hunter2@127.0.0.1:1/health
interval = 1s
timeout = 500ms
labels = team=payments

[rule api]
critical = api.status >= 500
on_critical = rollback
labels = service=api

[action rollback]
type = exec
command = /bin/true
)";

ProbeResult Up(double status) {
  ProbeResult result;
  result.up = true;
  result.latency_seconds = 0.25;
  result.fields["status"] = status;
  result.fields["json.state"] = std::string("ok");
  return result;
}

json Document(const StatusBoard& board) { return json::parse(board.Json()); }

TEST_CASE("status board lists configured rules and probes before any report", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(1000));
  const json doc = Document(board);

  REQUIRE(doc["rules"].size() == 1);
  CHECK(doc["rules"][0]["name"] == "api");
  CHECK(doc["rules"][0]["grade"] == "excellent");
  CHECK(doc["rules"][0]["stale"] == true);
  CHECK(doc["rules"][0]["labels"]["service"] == "api");
  CHECK(doc["rules"][0]["probes"] == json::array({"api"}));
  REQUIRE(doc["probes"].size() == 1);
  CHECK(doc["probes"][0]["name"] == "api");
  CHECK(doc["probes"][0]["type"] == "http");
  CHECK(doc["probes"][0]["up"].is_null());
  CHECK(doc["probes"][0]["reported_at"].is_null());
  CHECK(doc["config"]["last_reload_ok"] == true);
  CHECK(doc["config"]["last_reload_time"] == FormatIso8601(FromMillis(1000)));
  CHECK(doc["paused_until"].is_null());
  CHECK(doc["last_actions"].empty());
  // The probe URL carries a password: the status document never shows URLs.
  CHECK(board.Json().find("hunter2") == std::string::npos);
}

TEST_CASE("status board shows the last probe report and the rule's grade", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  RuleSet& rules = *config.rules;
  const ProbeSpec& spec = config.probes[0]->spec();

  ProbeResult result = Up(503);
  board.OnProbeResult(spec, result, FromMillis(5000));
  rules.Record("api", FromMillis(5000), result);
  const RuleOutcome outcome = rules.Evaluate(0, FromMillis(5000));
  REQUIRE(outcome.grade == Grade::kCritical);
  board.OnRuleEvaluated(rules, 0, outcome, FromMillis(5000));

  const json doc = Document(board);
  const json& probe = doc["probes"][0];
  CHECK(probe["up"] == true);
  CHECK(probe["latency_seconds"] == 0.25);
  CHECK(probe["fields"]["status"] == 503.0);
  CHECK(probe["fields"]["json.state"] == "ok");
  CHECK(probe["error"].is_null());
  CHECK(probe["reported_at"] == FormatIso8601(FromMillis(5000)));
  const json& rule = doc["rules"][0];
  CHECK(rule["grade"] == "critical");
  CHECK(rule["stale"] == false);
  CHECK(rule["since"] == FormatIso8601(FromMillis(5000)));
  CHECK(rule["reason"].get<std::string>().find("api.status") != std::string::npos);
  CHECK(rule["held_by"].is_null());

  ProbeResult down;
  down.up = false;
  down.latency_seconds = 0.5;
  down.error = "connection refused";
  board.OnProbeResult(spec, down, FromMillis(6000));
  const json later = Document(board);
  CHECK(later["probes"][0]["up"] == false);
  CHECK(later["probes"][0]["error"] == "connection refused");
  CHECK(later["probes"][0]["fields"].empty());
}

TEST_CASE("status board shows each report's own fields, whether their names repeat or not",
          "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  const ProbeSpec& spec = config.probes[0]->spec();

  board.OnProbeResult(spec, Up(200), FromMillis(1000));
  ProbeResult same_names = Up(503);
  same_names.fields["json.state"] = std::string("degraded, and a reason longer than SSO");
  board.OnProbeResult(spec, same_names, FromMillis(2000));
  json probe = Document(board)["probes"][0];
  CHECK(probe["fields"] ==
        json{{"status", 503.0}, {"json.state", "degraded, and a reason longer than SSO"}});

  ProbeResult other_names = Up(200);
  other_names.fields.erase("json.state");
  other_names.fields["json.version"] = 7.0;
  board.OnProbeResult(spec, other_names, FromMillis(3000));
  probe = Document(board)["probes"][0];
  CHECK(probe["fields"] == json{{"status", 200.0}, {"json.version", 7.0}});

  // The same names again, a value changing type.
  other_names.fields["json.version"] = std::string("7.1");
  board.OnProbeResult(spec, other_names, FromMillis(4000));
  probe = Document(board)["probes"][0];
  CHECK(probe["fields"] == json{{"status", 200.0}, {"json.version", "7.1"}});
}

JournalRecord Decision(const std::string& id, const std::string& decision, int64_t ms) {
  JournalRecord record;
  record.time = FromMillis(ms);
  record.id = id;
  record.rule = "api";
  record.action = "rollback";
  record.grade = "critical";
  record.previous_grade = "excellent";
  record.decision = decision;
  record.incident = "api-" + std::to_string(ms);
  record.reason = "api.status >= 500";
  record.breaker = "default";
  return record;
}

TEST_CASE("status board keeps the last actions newest first, completed when they finish",
          "[status_board]") {
  StatusBoard board(3);
  for (int i = 0; i < 5; ++i) {
    board.OnActionDecided(
        Decision("id" + std::to_string(i), i == 1 ? "suppressed_breaker" : "executed", 1000 * i),
        PlannedAction{}, FromMillis(0));
  }
  JournalRecord finished = Decision("id4", "executed", 9000);
  finished.phase = JournalPhase::kFinished;
  finished.result = "failed";
  finished.exit_code = 3;
  finished.duration_seconds = 1.5;
  board.OnActionFinished(finished);
  // A finish whose decision already fell off the list changes nothing.
  JournalRecord old = Decision("id0", "executed", 9500);
  old.phase = JournalPhase::kFinished;
  old.result = "ok";
  board.OnActionFinished(old);

  const json actions = Document(board)["last_actions"];
  REQUIRE(actions.size() == 3);
  CHECK(actions[0]["id"] == "id4");
  CHECK(actions[0]["result"] == "failed");
  CHECK(actions[0]["exit_code"] == 3);
  CHECK(actions[0]["duration_seconds"] == 1.5);
  CHECK(actions[0]["finished_at"] == FormatIso8601(FromMillis(9000)));
  CHECK(actions[1]["id"] == "id3");
  CHECK(actions[1]["result"].is_null());
  CHECK(actions[2]["id"] == "id2");
}

TEST_CASE("status board shows breakers, the pause and a failed reload", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  BreakerReport breaker;
  breaker.name = "default";
  breaker.open = true;
  breaker.admitted_in_window = 3;
  breaker.max_actions = 3;
  breaker.open_until = FromMillis(1'800'000);
  board.OnBreakers({breaker}, FromMillis(10));
  board.SetPausedUntil(FromMillis(60'000));
  board.OnReloadFailed("rollguard.conf:3: [daemon] listen: expected host:port", FromMillis(20));

  const json doc = Document(board);
  REQUIRE(doc["breakers"].size() == 1);
  CHECK(doc["breakers"][0]["name"] == "default");
  CHECK(doc["breakers"][0]["state"] == "open");
  CHECK(doc["breakers"][0]["admitted_in_window"] == 3);
  CHECK(doc["breakers"][0]["max_actions"] == 3);
  CHECK(doc["breakers"][0]["open_until"] == FormatIso8601(FromMillis(1'800'000)));
  CHECK(doc["paused_until"] == FormatIso8601(FromMillis(60'000)));
  CHECK(doc["config"]["last_reload_ok"] == false);
  CHECK(doc["config"]["last_reload_time"] == FormatIso8601(FromMillis(20)));
  CHECK(doc["config"]["last_reload_error"] ==
        "rollguard.conf:3: [daemon] listen: expected host:port");
  // The rules still show: a failed reload leaves the running config in place.
  CHECK(doc["rules"].size() == 1);

  board.SetPausedUntil(std::nullopt);
  board.OnConfigApplied(config, FromMillis(30));
  const json after = Document(board);
  CHECK(after["paused_until"].is_null());
  CHECK(after["config"]["last_reload_ok"] == true);
  CHECK(after["config"]["last_reload_error"].is_null());
}

TEST_CASE("status board: a reload drops removed rules and probes and keeps the rest",
          "[status_board]") {
  ConfigFolder folder(kRules + std::string(R"(
[probe db]
type = tcp
address = 127.0.0.1:1
interval = 1s
timeout = 500ms

[rule db]
failure = not db
)"));
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  board.OnProbeResult(config.probes[0]->spec(), Up(200), FromMillis(100));
  ProbeResult db_result;
  db_result.fields["phase.connect"] = 0.001;
  db_result.fields["status"] = 0.0;
  board.OnProbeResult(config.probes[1]->spec(), db_result, FromMillis(100));
  REQUIRE(Document(board)["rules"].size() == 2);
  CHECK(board.field_name_count() == 3);  // status, json.state, phase.connect: once each

  folder.Write("rules.d/main.rules", kRules);
  Config reloaded = folder.Load();
  board.OnConfigApplied(reloaded, FromMillis(200));
  const json doc = Document(board);
  REQUIRE(doc["rules"].size() == 1);
  CHECK(doc["rules"][0]["name"] == "api");
  REQUIRE(doc["probes"].size() == 1);
  CHECK(doc["probes"][0]["name"] == "api");
  CHECK(doc["probes"][0]["fields"]["status"] == 200.0);  // the surviving probe's last report
  CHECK(board.field_name_count() == 2);  // the names only the dropped probe held went with it
}

TEST_CASE("status board publishes changes at most every 100ms", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.Want();  // an HTTP reader asked for the document
  CHECK(board.Published() == nullptr);
  board.OnConfigApplied(config, FromMillis(0));
  CHECK(board.dirty());
  CHECK_FALSE(board.MaybePublish(FromMillis(1000)).has_value());
  CHECK_FALSE(board.dirty());
  const auto first = board.Published();
  CHECK(json::parse(*first)["rules"][0]["name"] == "api");

  // Nothing changed: nothing to publish, the same document stays.
  CHECK_FALSE(board.MaybePublish(FromMillis(1010)).has_value());
  CHECK(board.Published() == first);

  // A change 50ms after the last publication waits for the interval.
  board.SetPausedUntil(FromMillis(90'000));
  const auto again = board.MaybePublish(FromMillis(1050));
  REQUIRE(again.has_value());
  CHECK(*again == FromMillis(1100));
  CHECK(json::parse(*board.Published())["paused_until"].is_null());
  CHECK_FALSE(board.MaybePublish(FromMillis(1100)).has_value());
  CHECK(json::parse(*board.Published())["paused_until"] == FormatIso8601(FromMillis(90'000)));
  // The document published earlier is still intact for a reader holding it.
  CHECK(json::parse(*first)["paused_until"].is_null());
}

TEST_CASE("status board publishes readings once a second, grades within 100ms", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.Want();  // an HTTP reader asked for the document
  board.OnConfigApplied(config, FromMillis(0));
  CHECK_FALSE(board.MaybePublish(FromMillis(1000)).has_value());
  const ProbeSpec& api = config.probes[0]->spec();

  // A reading 100ms after the last publication waits for the readings interval.
  board.OnProbeResult(api, Up(201), FromMillis(1100));
  const auto reading = board.MaybePublish(FromMillis(1100));
  REQUIRE(reading.has_value());
  CHECK(*reading == FromMillis(2000));
  CHECK(json::parse(*board.Published())["probes"][0]["up"].is_null());
  CHECK_FALSE(board.MaybePublish(FromMillis(2000)).has_value());
  CHECK(json::parse(*board.Published())["probes"][0]["fields"]["status"] == 201.0);

  // A grade change is published within the 100ms interval, with the reading behind it.
  const ProbeResult failing = Up(503);
  board.OnProbeResult(api, failing, FromMillis(2050));
  RuleSet& rules = *config.rules;
  rules.Record("api", FromMillis(2050), failing);
  const RuleOutcome outcome = rules.Evaluate(0, FromMillis(2050));
  REQUIRE(outcome.changed);
  board.OnRuleEvaluated(rules, 0, outcome, FromMillis(2050));
  const auto news = board.MaybePublish(FromMillis(2050));
  REQUIRE(news.has_value());
  CHECK(*news == FromMillis(2100));
  CHECK_FALSE(board.MaybePublish(FromMillis(2100)).has_value());
  const json doc = json::parse(*board.Published());
  CHECK(doc["rules"][0]["grade"] == "critical");
  CHECK(doc["probes"][0]["fields"]["status"] == 503.0);
}

TEST_CASE("status board renders a large publication in slices, one per call", "[status_board]") {
  constexpr size_t kProbes = 2 * StatusBoard::kRenderSlice + 44;
  std::string rules;
  for (size_t i = 0; i < kProbes; ++i) {
    rules += "[probe p" + std::to_string(i) +
             "]\ntype = tcp\naddress = 127.0.0.1:1\ninterval = 1s\ntimeout = 500ms\n";
  }
  ConfigFolder folder(rules);
  Config config = folder.Load();
  StatusBoard board;
  board.Want();  // an HTTP reader asked for the document
  board.OnConfigApplied(config, FromMillis(0));

  // The first publication renders every entry: three slices, a millisecond apart.
  const auto first = board.MaybePublish(FromMillis(1000));
  REQUIRE(first.has_value());
  CHECK(*first == FromMillis(1001));  // the next slice, not the end of an interval
  CHECK(board.Published() == nullptr);
  CHECK(board.MaybePublish(FromMillis(1000)) == first);  // no second slice within 1 ms
  CHECK(board.MaybePublish(FromMillis(1001)) == std::optional<TimePoint>(FromMillis(1002)));
  CHECK(board.Published() == nullptr);
  CHECK_FALSE(board.MaybePublish(FromMillis(1002)).has_value());
  CHECK(json::parse(*board.Published())["probes"].size() == kProbes);

  // Every probe reports; p0 reports again after its slice was rendered: the publication
  // shows the reading its slice saw, and the next one the newer reading.
  for (const auto& probe : config.probes)
    board.OnProbeResult(probe->spec(), Up(200), FromMillis(1500));
  REQUIRE(board.MaybePublish(FromMillis(2002)) == std::optional<TimePoint>(FromMillis(2003)));
  board.OnProbeResult(config.probes[0]->spec(), Up(503), FromMillis(2002));
  REQUIRE(board.MaybePublish(FromMillis(2003)) == std::optional<TimePoint>(FromMillis(2004)));
  const auto next = board.MaybePublish(FromMillis(2004));
  REQUIRE(next.has_value());
  CHECK(*next == FromMillis(3004));  // the newer reading waits for the readings interval
  json doc = json::parse(*board.Published());
  CHECK(doc["probes"][0]["fields"]["status"] == 200.0);
  CHECK(doc["probes"][kProbes - 1]["fields"]["status"] == 200.0);
  CHECK_FALSE(board.MaybePublish(FromMillis(3004)).has_value());  // one change: one slice
  doc = json::parse(*board.Published());
  CHECK(doc["probes"][0]["fields"]["status"] == 503.0);
  CHECK(*board.Published() == board.Json());
}

TEST_CASE("status board: a reload during a sliced publication starts it again", "[status_board]") {
  auto probes = [](size_t count) {
    std::string text;
    for (size_t i = 0; i < count; ++i) {
      text += "[probe p" + std::to_string(i) +
              "]\ntype = tcp\naddress = 127.0.0.1:1\ninterval = 1s\ntimeout = 500ms\n";
    }
    return text;
  };
  ConfigFolder big(probes(2 * StatusBoard::kRenderSlice + 44));
  Config before = big.Load();
  StatusBoard board;
  board.Want();  // an HTTP reader asked for the document
  board.OnConfigApplied(before, FromMillis(0));
  REQUIRE(board.MaybePublish(FromMillis(1000)) == std::optional<TimePoint>(FromMillis(1001)));

  // Half-way through, the configuration changes: the publication is written afresh from
  // the new entries, and nothing of the old one is spliced in.
  ConfigFolder small(probes(3));
  Config after = small.Load();
  board.OnConfigApplied(after, FromMillis(1001));
  board.OnProbeResult(after.probes[2]->spec(), Up(204), FromMillis(1001));
  std::optional<TimePoint> next = board.MaybePublish(FromMillis(1001));
  for (int i = 0; i < 10 && next && *next <= FromMillis(1010); ++i) {
    next = board.MaybePublish(*next);
  }
  CHECK(*board.Published() == board.Json());
  const json doc = json::parse(*board.Published());
  REQUIRE(doc["probes"].size() == 3);
  CHECK(doc["probes"][0]["name"] == "p0");
  CHECK(doc["probes"][2]["fields"]["status"] == 204.0);
}

TEST_CASE("status board survives probe text that is not UTF-8", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  ProbeResult result;
  result.error = std::string("bad \xff\xfe bytes");
  board.OnProbeResult(config.probes[0]->spec(), result, FromMillis(1));
  const json doc = Document(board);
  CHECK(doc["probes"][0]["error"].get<std::string>().find("bad") == 0);
}

TEST_CASE("status board re-renders what changed and reuses the rest, same bytes as afresh",
          "[status_board]") {
  ConfigFolder folder(std::string(kRules) +
                      "[probe db]\ntype = tcp\naddress = 127.0.0.1:1\ninterval = 1s\n"
                      "timeout = 500ms\n");
  Config config = folder.Load();
  REQUIRE(config.probes.size() == 2);
  const ProbeSpec& first_probe = config.probes[0]->spec();
  const ProbeSpec& second_probe = config.probes[1]->spec();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  board.OnProbeResult(first_probe, Up(200), FromMillis(1000));
  board.OnProbeResult(second_probe, Up(200), FromMillis(1000));
  const std::string before = board.Json();

  board.OnProbeResult(first_probe, Up(503), FromMillis(2000));
  const std::string after = board.Json();
  CHECK(after != before);
  const json doc = json::parse(after);
  CHECK(doc["probes"][0]["fields"]["status"] == 503.0);
  CHECK(doc["probes"][0]["reported_at"] == FormatIso8601(FromMillis(2000)));
  CHECK(doc["probes"][1]["fields"]["status"] == 200.0);

  // A board that saw only the final state renders every entry afresh: same document.
  StatusBoard fresh;
  fresh.OnConfigApplied(config, FromMillis(0));
  fresh.OnProbeResult(second_probe, Up(200), FromMillis(1000));
  fresh.OnProbeResult(first_probe, Up(503), FromMillis(2000));
  CHECK(fresh.Json() == after);
  CHECK(json::parse(after).dump() == after);  // the order nlohmann itself would dump
}

TEST_CASE("status board: copying a large document into place is sliced too", "[status_board]") {
  // Enough probes (over 100 bytes each) that their renderings pass kCopySlice bytes.
  std::string rules;
  size_t count = 0;
  for (; count * 100 < 2 * StatusBoard::kCopySlice; ++count) {
    rules += "[probe p" + std::to_string(count) +
             "]\ntype = tcp\naddress = 127.0.0.1:1\ninterval = 1s\ntimeout = 500ms\n";
  }
  ConfigFolder folder(rules);
  const Config config = folder.Load();
  StatusBoard board;
  board.Want();  // an HTTP reader asked for the document
  board.OnConfigApplied(config, FromMillis(0));
  std::optional<TimePoint> next = FromMillis(1000);
  while (next) next = board.MaybePublish(*next);
  const size_t size = board.Published()->size();
  REQUIRE(size > StatusBoard::kCopySlice);

  // One reading changes: one entry to render, but megabytes to copy, in slices.
  board.OnProbeResult(config.probes[0]->spec(), Up(200), FromMillis(5000));
  next = FromMillis(10'000);
  size_t slices = 0;
  while (next) {
    next = board.MaybePublish(*next);
    ++slices;
  }
  // About kCopySlice bytes each (a slice ends after the entry that passes it).
  CHECK(slices >= 2);
  CHECK(slices <= size / StatusBoard::kCopySlice + 1);
  CHECK(json::parse(*board.Published())["probes"][0]["fields"]["status"] == 200.0);
  CHECK(*board.Published() == board.Json());
}

std::string ManyProbes(size_t count) {
  std::string text;
  for (size_t i = 0; i < count; ++i) {
    text += "[probe p" + std::to_string(i) +
            "]\ntype = tcp\naddress = 127.0.0.1:1\ninterval = 1s\ntimeout = 500ms\n";
  }
  return text;
}

// Calls MaybePublish as the loop would, from `now` on, until it has nothing pending.
void PublishAll(StatusBoard& board, TimePoint now) {
  std::optional<TimePoint> next = now;
  for (int calls = 0; next && calls < 10'000; ++calls) next = board.MaybePublish(*next);
  REQUIRE_FALSE(next.has_value());
}

TEST_CASE("status board renders nothing for readers until one asks", "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  const ProbeSpec& api = config.probes[0]->spec();
  for (int64_t t = 1000; t <= 5000; t += 1000) {
    board.OnProbeResult(api, Up(200), FromMillis(t));
    CHECK_FALSE(board.MaybePublish(FromMillis(t)).has_value());
  }
  CHECK(board.Published() == nullptr);
  CHECK(board.HeldBytes() == 0);
  // `rollguard status` renders on demand, as before.
  CHECK(Document(board)["probes"][0]["fields"]["status"] == 200.0);

  // A request that finds nothing (and does not wait here): the loop's next call publishes
  // at once, whatever the intervals say.
  CHECK(board.Request(Duration::zero()) == nullptr);
  CHECK_FALSE(board.MaybePublish(FromMillis(5001)).has_value());
  REQUIRE(board.Published() != nullptr);
  CHECK(*board.Published() == board.Json());
  CHECK(board.HeldBytes() >= board.Published()->size());
  CHECK(board.Request(Duration::zero()) == board.Published());  // served at once
}

TEST_CASE("status board keeps the document for kWantedFor after the last request, then frees it",
          "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  RuleSet& rules = *config.rules;
  const ProbeSpec& api = config.probes[0]->spec();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  board.Want();
  CHECK_FALSE(board.MaybePublish(FromMillis(1000)).has_value());
  REQUIRE(board.Published() != nullptr);

  // While wanted, the usual rules: a change waits for the 100ms interval.
  board.SetPausedUntil(FromMillis(90'000));
  CHECK(board.MaybePublish(FromMillis(1050)) == std::optional<TimePoint>(FromMillis(1100)));
  CHECK_FALSE(board.MaybePublish(FromMillis(1100)).has_value());
  CHECK(json::parse(*board.Published())["paused_until"] == FormatIso8601(FromMillis(90'000)));

  // A later request is served at once and keeps the document kWantedFor from then on.
  CHECK(board.Request(Duration::zero()) == board.Published());
  CHECK_FALSE(board.MaybePublish(FromMillis(30'000)).has_value());
  const TimePoint until = FromMillis(30'000) + StatusBoard::kWantedFor;
  CHECK_FALSE(board.MaybePublish(until - Duration{1}).has_value());
  const std::shared_ptr<const std::string> held = board.Published();
  REQUIRE(held != nullptr);

  // Then nobody asked for kWantedFor: the document goes. A reader still holding it keeps
  // an intact copy until it lets go.
  CHECK_FALSE(board.MaybePublish(until).has_value());
  CHECK(board.Published() == nullptr);
  CHECK(board.HeldBytes() == 0);
  CHECK(json::parse(*held)["paused_until"] == FormatIso8601(FromMillis(90'000)));

  // Not wanted: what observers report is tracked, nothing is rendered for readers.
  const TimePoint later = until + std::chrono::seconds(1);
  const ProbeResult failing = Up(503);
  board.OnProbeResult(api, failing, later);
  rules.Record("api", later, failing);
  const RuleOutcome outcome = rules.Evaluate(0, later);
  REQUIRE(outcome.grade == Grade::kCritical);
  board.OnRuleEvaluated(rules, 0, outcome, later);
  board.SetPausedUntil(std::nullopt);
  CHECK_FALSE(board.MaybePublish(later + std::chrono::seconds(1)).has_value());
  CHECK(board.Published() == nullptr);
  CHECK(board.HeldBytes() == 0);

  // The next request gets a document rendered anew from that state, at once.
  board.Want();
  CHECK_FALSE(board.MaybePublish(later + std::chrono::seconds(2)).has_value());
  REQUIRE(board.Published() != nullptr);
  const json doc = json::parse(*board.Published());
  CHECK(doc["rules"][0]["grade"] == "critical");
  CHECK(doc["probes"][0]["fields"]["status"] == 503.0);
  CHECK(doc["paused_until"].is_null());
  CHECK(*board.Published() == board.Json());

  // A board that only saw the final state renders the same bytes.
  StatusBoard fresh;
  fresh.OnConfigApplied(config, FromMillis(0));
  fresh.OnProbeResult(api, failing, later);
  fresh.OnRuleEvaluated(rules, 0, outcome, later);
  CHECK(fresh.Json() == *board.Published());
}

TEST_CASE("status board: a release drops a half-written publication too", "[status_board]") {
  ConfigFolder folder(ManyProbes(2 * StatusBoard::kRenderSlice + 44));
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  board.Want();
  PublishAll(board, FromMillis(1000));
  const size_t size = board.Published()->size();

  // Every probe reports: the next publication is under way, a slice written.
  for (const auto& probe : config.probes)
    board.OnProbeResult(probe->spec(), Up(200), FromMillis(2500));
  REQUIRE(board.MaybePublish(FromMillis(3000)) == std::optional<TimePoint>(FromMillis(3001)));
  CHECK(board.HeldBytes() > size);

  // Nobody asked since: both go, mid-publication.
  CHECK_FALSE(board.MaybePublish(FromMillis(1000) + StatusBoard::kWantedFor).has_value());
  CHECK(board.Published() == nullptr);
  CHECK(board.HeldBytes() == 0);

  // The entries' places in the dropped documents are forgotten: a new request gets every
  // entry rendered anew, the same bytes as afresh.
  board.OnProbeResult(config.probes[1]->spec(), Up(503), FromMillis(70'000));
  board.Want();
  PublishAll(board, FromMillis(80'000));
  REQUIRE(board.Published() != nullptr);
  CHECK(*board.Published() == board.Json());
  const json doc = json::parse(*board.Published());
  REQUIRE(doc["probes"].size() == config.probes.size());
  CHECK(doc["probes"][0]["fields"]["status"] == 200.0);
  CHECK(doc["probes"][1]["fields"]["status"] == 503.0);
  CHECK(doc["probes"][config.probes.size() - 1]["fields"]["status"] == 200.0);
}

TEST_CASE("status board: requests without a publication wake the loop and share one",
          "[status_board]") {
  ConfigFolder folder(ManyProbes(2 * StatusBoard::kRenderSlice + 44));
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  std::mutex mutex;
  std::condition_variable woken;
  int wakes = 0;
  board.SetWake([&] {
    std::lock_guard<std::mutex> lock(mutex);
    ++wakes;
    woken.notify_all();
  });

  std::shared_ptr<const std::string> got[2];
  std::thread readers[2];
  for (int i = 0; i < 2; ++i) {
    readers[i] =
        std::thread([&board, &got, i] { got[i] = board.Request(std::chrono::seconds(20)); });
  }
  {
    // This thread is the loop: it publishes once both readers woke it.
    std::unique_lock<std::mutex> lock(mutex);
    REQUIRE(woken.wait_for(lock, std::chrono::seconds(20), [&] { return wakes == 2; }));
  }
  std::optional<TimePoint> next = FromMillis(1000);
  int slices = 0;
  while (next) {
    next = board.MaybePublish(*next);
    ++slices;
  }
  for (std::thread& reader : readers) reader.join();
  CHECK(slices == 3);  // one publication, in its slices
  REQUIRE(got[0] != nullptr);
  CHECK(got[0] == got[1]);
  CHECK(*got[0] == board.Json());
}

TEST_CASE("status board: a request gives up after its wait when nothing publishes",
          "[status_board]") {
  StatusBoard board;
  int wakes = 0;
  board.SetWake([&wakes] { ++wakes; });
  const auto start = std::chrono::steady_clock::now();
  CHECK(board.Request(std::chrono::milliseconds(50)) == nullptr);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(50));
  CHECK(wakes == 1);
}

TEST_CASE("status board: a stopping loop lets waiting requests go at once", "[status_board]") {
  StatusBoard board;
  std::shared_ptr<const std::string> got = std::make_shared<const std::string>("unset");
  std::thread reader([&board, &got] { got = board.Request(std::chrono::seconds(20)); });
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  board.StopRequests();
  reader.join();
  CHECK(got == nullptr);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK(board.Request(std::chrono::seconds(20)) == nullptr);  // at once
}

TEST_CASE("status board: a wall clock stepped back keeps the document no longer than kWantedFor",
          "[status_board]") {
  ConfigFolder folder(kRules);
  Config config = folder.Load();
  StatusBoard board;
  board.OnConfigApplied(config, FromMillis(0));
  board.Want();
  const TimePoint asked = FromMillis(10'000'000);
  CHECK_FALSE(board.MaybePublish(asked).has_value());
  REQUIRE(board.Published() != nullptr);
  // The clock steps back an hour: the document stays kWantedFor from then, not an hour more.
  const TimePoint stepped = asked - std::chrono::hours(1);
  CHECK_FALSE(board.MaybePublish(stepped).has_value());
  CHECK(board.Published() != nullptr);
  CHECK_FALSE(board.MaybePublish(stepped + StatusBoard::kWantedFor).has_value());
  CHECK(board.Published() == nullptr);
}

}  // namespace
}  // namespace rollguard
