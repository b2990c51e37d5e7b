#include "daemon/control_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "daemon/control_client.h"

using namespace rollguard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Records what the socket asked it to do.
class RecordingTarget final : public ControlTarget {
 public:
  std::string StatusJson() override {
    ++status_calls;
    return status;
  }
  Result<TimePoint> Pause(Duration duration) override {
    paused_for = duration;
    return TimePoint{} + duration;
  }
  bool Resume() override {
    ++resumes;
    return true;
  }
  Status ResetBreaker(const std::string& name) override {
    reset.push_back(name);
    if (name == "nope") return Fail("no breaker named \"nope\" (known: default)");
    return {};
  }
  Status Deployed(const std::string& service, const std::string& version) override {
    deploys.emplace_back(service, version);
    return {};
  }

  std::string status = R"({"version":"t","paused_until":null,"rules":[],"breakers":[],)"
                       R"("last_actions":[]})";
  int status_calls = 0;
  std::optional<Duration> paused_for;
  int resumes = 0;
  std::vector<std::string> reset;
  std::vector<std::pair<std::string, std::string>> deploys;
};

json Handle(const std::string& request, ControlTarget& target) {
  return json::parse(HandleControlRequest(request, target));
}

// A temporary folder with a short path (sun_path holds 108 bytes).
struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/rg-sock-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

}  // namespace

TEST_CASE("control requests run the named command on the target", "[control]") {
  RecordingTarget target;
  json reply = Handle(R"({"command":"pause","duration":"30m"})", target);
  CHECK(reply["ok"] == true);
  CHECK(target.paused_for == Duration(30min));
  CHECK(reply["paused_until"] == FormatIso8601(TimePoint{} + 30min));

  CHECK(Handle(R"({"command":"resume"})", target)["ok"] == true);
  CHECK(target.resumes == 1);

  CHECK(Handle(R"({"command":"breaker_reset"})", target)["message"] == "breaker default reset");
  reply = Handle(R"({"command":"breaker_reset","breaker":"nope"})", target);
  CHECK(reply["ok"] == false);
  CHECK_THAT(reply["error"].get<std::string>(), Catch::Contains("known: default"));
  CHECK(target.reset == std::vector<std::string>{"", "nope"});

  reply = Handle(R"({"command":"deployed","service":"api","version":"1.2"})", target);
  CHECK(reply["message"] == "deploy recorded for api at version 1.2");
  CHECK(target.deploys.back() == std::pair<std::string, std::string>{"api", "1.2"});

  reply = Handle(R"({"command":"status"})", target);
  CHECK(reply["status"]["version"] == "t");
}

TEST_CASE("malformed control requests get an error reply, never an exception", "[control]") {
  RecordingTarget target;
  for (const char* request :
       {"", "not json", "[1,2]", R"({"command":42})", R"({"command":"reboot"})",
        R"({"command":"pause"})", R"({"command":"pause","duration":"-5m"})",
        R"({"command":"pause","duration":"0s"})", R"({"command":"deployed","service":7})"}) {
    INFO(request);
    const json reply = Handle(request, target);
    CHECK(reply["ok"] == false);
    CHECK_FALSE(reply["error"].get<std::string>().empty());
  }
  CHECK_FALSE(target.paused_for.has_value());
  CHECK(target.deploys.empty());
}

TEST_CASE("the control socket answers a real client and is owner-only without the group",
          "[control]") {
  TempDir dir;
  const std::string path = dir.path + "/rollguard.sock";
  sd_event* event = nullptr;
  REQUIRE(sd_event_new(&event) >= 0);
  RecordingTarget target;
  {
    auto socket = ControlSocket::Create(event, path, target);
    REQUIRE(socket);
    struct stat info {};
    REQUIRE(stat(path.c_str(), &info) == 0);
    CHECK(S_ISSOCK(info.st_mode));
    CHECK((info.st_mode & 0007) == 0);  // never open to others

    // The client blocks; the loop runs on this thread while a client thread asks.
    Result<std::string> reply = Fail("not run");
    std::thread client(
        [&] { reply = SendControlRequest(path, R"({"command":"deployed","service":"api"})", 5s); });
    for (int i = 0; i < 200 && target.deploys.empty(); ++i) sd_event_run(event, 10'000);
    for (int i = 0; i < 20; ++i) sd_event_run(event, 1'000);
    client.join();
    REQUIRE(reply);
    CHECK(json::parse(*reply)["message"] == "deploy recorded for api");
    REQUIRE(target.deploys.size() == 1);

    // A client that connects and says nothing does not hold the loop.
    const int silent = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    REQUIRE(connect(silent, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    CHECK(sd_event_run(event, 10'000) >= 0);
    close(silent);
    for (int i = 0; i < 5; ++i) sd_event_run(event, 1'000);
  }
  CHECK_FALSE(std::filesystem::exists(path));  // removed with the socket
  sd_event_unref(event);
}

TEST_CASE("a stale socket file is replaced, any other file in the way is an error", "[control]") {
  TempDir dir;
  const std::string path = dir.path + "/rollguard.sock";
  sd_event* event = nullptr;
  REQUIRE(sd_event_new(&event) >= 0);
  RecordingTarget target;
  {
    const int stale = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
    REQUIRE(bind(stale, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    close(stale);  // the file stays, as after a crash
    auto socket = ControlSocket::Create(event, path, target);
    CHECK(socket);
  }
  const std::string regular = dir.path + "/not-a-socket";
  {
    FILE* f = std::fopen(regular.c_str(), "w");
    std::fclose(f);
  }
  auto refused = ControlSocket::Create(event, regular, target);
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error().message, Catch::Contains("not a socket"));
  CHECK(std::filesystem::exists(regular));
  sd_event_unref(event);
}

TEST_CASE("the client says clearly when no daemon listens", "[control]") {
  TempDir dir;
  auto reply = SendControlRequest(dir.path + "/absent.sock", R"({"command":"status"})", 1s);
  REQUIRE_FALSE(reply);
  CHECK_THAT(reply.error().message, Catch::Contains("rollguard is not running"));
}

TEST_CASE("the status table shows rules, breakers, the pause and last actions", "[control]") {
  const std::string status = R"({
    "version": "1.0", "config": {"path": "/etc/rollguard/rollguard.conf", "last_reload_ok": true},
    "paused_until": "2026-01-01T12:00:00.000Z",
    "rules": [{"name": "api", "grade": "critical", "since": "2026-01-01T11:00:00.000Z",
               "stale": false, "reason": "api.status >= 500", "held_by": null},
              {"name": "db", "grade": "good", "since": null, "stale": true, "reason": "",
               "held_by": null}],
    "breakers": [{"name": "default", "state": "open", "admitted_in_window": 3,
                  "max_actions": 3, "open_until": "2026-01-01T11:30:00.000Z"}],
    "last_actions": [{"time": "2026-01-01T11:00:01.000Z", "rule": "api", "action": "rollback",
                      "decision": "executed", "result": null, "error": null}]
  })";
  auto table = FormatStatusTable(status);
  REQUIRE(table);
  CHECK_THAT(*table, Catch::Contains("PAUSED until 2026-01-01T12:00:00.000Z"));
  CHECK_THAT(*table, Catch::Contains("api   critical"));
  CHECK_THAT(*table, Catch::Contains("good (stale)"));
  CHECK_THAT(*table, Catch::Contains("default  open   3/3"));
  CHECK_THAT(*table, Catch::Contains("executed  running"));
  CHECK_FALSE(FormatStatusTable("[]"));
}
