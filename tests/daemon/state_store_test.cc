#include "daemon/state_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/fakes/fake_clock.h"

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "state_store_test.XXXXXX");
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::trunc);
  out << contents;
}

PersistedState SampleState() {
  PersistedState state;
  state.breakers[""] = BreakerState{{FromMillis(1'000), FromMillis(2'000)}, std::nullopt};
  state.breakers["db"] =
      BreakerState{{FromMillis(5'000), FromMillis(6'000), FromMillis(7'000)}, FromMillis(7'000)};
  state.last_runs["rollback_api"] = FromMillis(7'000);
  state.rules["api"] = PersistedRule{"critical", FromMillis(4'000)};
  state.rules["db"] = PersistedRule{"excellent", FromMillis(0)};
  state.incidents["api"] =
      IncidentState{"4000-1", "critical", FromMillis(4'000), true, {"rollback_api", "page_oncall"}};
  state.paused_until = FromMillis(1'700'000'000'000);
  state.deploys["api"] = DeployRecord{"1.4.2", FromMillis(3'000)};
  state.deploys[""] = DeployRecord{"", FromMillis(2'500)};
  PersistedVerify verify;
  verify.rule = "api";
  verify.action = "rollback_api";
  verify.incident = "api-4000";
  verify.grade = "critical";
  verify.previous_grade = "none";
  verify.reason = "api.status >= 500 (503)";
  verify.service = "api";
  verify.summary = "api answers 503";
  verify.escalate = "page_oncall";
  verify.verify = std::chrono::minutes(5);
  verify.finished = FromMillis(7'500);
  verify.detected_at = FromMillis(3'900);
  state.verifies.push_back(verify);
  state.journal_records = 42;
  return state;
}

}  // namespace

TEST_CASE("persisted state round-trips through JSON", "[state_store]") {
  const PersistedState state = SampleState();
  Result<PersistedState> parsed = ParseState(SerializeState(state));
  REQUIRE(parsed.ok());
  CHECK(*parsed == state);

  Result<PersistedState> empty = ParseState(SerializeState(PersistedState{}));
  REQUIRE(empty.ok());
  CHECK(*empty == PersistedState{});
}

TEST_CASE("state JSON tolerates unknown and missing keys", "[state_store]") {
  Result<PersistedState> parsed = ParseState(R"({
    "format": 1, "added_later": {"x": 1},
    "breakers": {"": {"admitted_ms": [10, 20], "unknown": true}},
    "rules": {"api": {"grade": "warning"}}
  })");
  REQUIRE(parsed.ok());
  CHECK(parsed->breakers.at("").admitted == std::vector<TimePoint>{FromMillis(10), FromMillis(20)});
  CHECK_FALSE(parsed->breakers.at("").opened_at);
  CHECK(parsed->rules.at("api").grade == "warning");
  CHECK(parsed->incidents.empty());
  CHECK_FALSE(parsed->paused_until);
  CHECK(parsed->journal_records == 0);

  REQUIRE(ParseState("{}").ok());
}

TEST_CASE("state JSON errors say where the bad value is", "[state_store]") {
  Result<PersistedState> wrong_type =
      ParseState(R"({"breakers": {"db": {"admitted_ms": [1, "two"]}}})");
  REQUIRE_FALSE(wrong_type.ok());
  CHECK_THAT(wrong_type.error().message, Catch::Contains("breakers[\"db\"].admitted_ms"));
  CHECK_THAT(wrong_type.error().message, Catch::Contains("integer milliseconds"));

  Result<PersistedState> newer = ParseState(R"({"format": 2})");
  REQUIRE_FALSE(newer.ok());
  CHECK_THAT(newer.error().message, Catch::Contains("newer rollguard"));

  CHECK_FALSE(ParseState("[]").ok());
  CHECK_FALSE(ParseState("").ok());
  CHECK_FALSE(ParseState(R"({"incidents": {"api": {"acted": "yes"}}})").ok());
  CHECK_FALSE(ParseState(R"({"journal_records": -1})").ok());
}

TEST_CASE("opening a missing state directory creates it with mode 0750", "[state_store]") {
  TempDir temp;
  const std::string dir = temp / "state";
  const mode_t old_umask = ::umask(077);
  Result<StateStore> store = StateStore::Open(dir);
  ::umask(old_umask);
  REQUIRE(store.ok());
  struct stat info {};
  REQUIRE(::stat(dir.c_str(), &info) == 0);
  CHECK(S_ISDIR(info.st_mode));
  CHECK((info.st_mode & 07777) == 0750);
  CHECK(store->StatePath() == dir + "/state.json");
}

TEST_CASE("a state directory that cannot be used is an error naming it", "[state_store]") {
  TempDir temp;
  Result<StateStore> no_parent = StateStore::Open(temp / "missing/state");
  REQUIRE_FALSE(no_parent.ok());
  CHECK_THAT(no_parent.error().message, Catch::Contains(temp / "missing/state"));

  WriteFile(temp / "a_file", "x");
  Result<StateStore> not_a_dir = StateStore::Open(temp / "a_file");
  REQUIRE_FALSE(not_a_dir.ok());
  CHECK_THAT(not_a_dir.error().message, Catch::Contains("a_file"));
}

TEST_CASE("a missing state file loads as empty state", "[state_store]") {
  TempDir temp;
  Result<StateStore> store = StateStore::Open(temp.path());
  REQUIRE(store.ok());
  Result<PersistedState> state = store->Load();
  REQUIRE(state.ok());
  CHECK(*state == PersistedState{});
}

TEST_CASE("saved state loads back after reopening the store", "[state_store]") {
  TempDir temp;
  {
    Result<StateStore> store = StateStore::Open(temp.path());
    REQUIRE(store.ok());
    REQUIRE(store->Save(SampleState()).ok());
  }
  Result<StateStore> reopened = StateStore::Open(temp.path());
  REQUIRE(reopened.ok());
  Result<PersistedState> state = reopened->Load();
  REQUIRE(state.ok());
  CHECK(*state == SampleState());

  struct stat info {};
  REQUIRE(::stat((temp / "state.json").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777 & ~0640) == 0);  // at most rw-r-----
}

TEST_CASE("a temporary file left by a crash mid-save is ignored", "[state_store]") {
  TempDir temp;
  Result<StateStore> store = StateStore::Open(temp.path());
  REQUIRE(store.ok());
  REQUIRE(store->Save(SampleState()).ok());
  // The crash: the next save died after writing half of its temporary file.
  WriteFile(temp / "state.json.tmp", "{\"breakers\": {\"\": {\"admit");

  Result<PersistedState> loaded = store->Load();
  REQUIRE(loaded.ok());
  CHECK(*loaded == SampleState());

  // The next save overwrites the leftover and leaves no temporary file behind.
  PersistedState next = SampleState();
  next.paused_until.reset();
  REQUIRE(store->Save(next).ok());
  CHECK_FALSE(std::filesystem::exists(temp / "state.json.tmp"));
  Result<PersistedState> reloaded = store->Load();
  REQUIRE(reloaded.ok());
  CHECK(*reloaded == next);
}

TEST_CASE("a corrupt state file is moved aside and reported, never silently reset",
          "[state_store]") {
  TempDir temp;
  FakeClock clock(FromMillis(1'700'000'123'456));
  Result<StateStore> store = StateStore::Open(temp.path(), clock);
  REQUIRE(store.ok());
  const std::string garbage = "{\"breakers\": {\"\": {\"admitted_ms\": [1, 2";
  WriteFile(temp / "state.json", garbage);

  Result<PersistedState> loaded = store->Load();
  REQUIRE_FALSE(loaded.ok());
  const std::string aside = temp / "state.json.corrupt-1700000123456";
  CHECK_THAT(loaded.error().message, Catch::Contains(temp / "state.json"));
  CHECK_THAT(loaded.error().message, Catch::Contains(aside));
  CHECK(ReadFile(aside) == garbage);
  CHECK_FALSE(std::filesystem::exists(temp / "state.json"));

  // What comes next is the caller's decision; the store now reads as empty.
  Result<PersistedState> after = store->Load();
  REQUIRE(after.ok());
  CHECK(*after == PersistedState{});
}

TEST_CASE("a state file with a wrongly typed value counts as corrupt", "[state_store]") {
  TempDir temp;
  FakeClock clock(FromMillis(42));
  Result<StateStore> store = StateStore::Open(temp.path(), clock);
  REQUIRE(store.ok());
  WriteFile(temp / "state.json", R"({"paused_until_ms": "tomorrow"})");
  Result<PersistedState> loaded = store->Load();
  REQUIRE_FALSE(loaded.ok());
  CHECK_THAT(loaded.error().message, Catch::Contains("paused_until_ms"));
  CHECK(std::filesystem::exists(temp / "state.json.corrupt-42"));
}

TEST_CASE("save replaces the state file by rename, never rewriting it in place", "[state_store]") {
  TempDir temp;
  Result<StateStore> store = StateStore::Open(temp.path());
  REQUIRE(store.ok());
  PersistedState first;
  first.rules["api"] = PersistedRule{"warning", FromMillis(1)};
  REQUIRE(store->Save(first).ok());

  // A reader that opened the file before the next save still sees the whole old document,
  // and the path then names a different file: the new one was renamed over it.
  std::ifstream reader(temp / "state.json");
  struct stat before {};
  REQUIRE(::stat((temp / "state.json").c_str(), &before) == 0);

  for (int i = 0; i < 20; ++i) {
    PersistedState next = SampleState();
    next.rules["api"] = PersistedRule{"critical", FromMillis(i)};
    REQUIRE(store->Save(next).ok());
    // Between saves the file always parses and holds exactly the last saved document.
    Result<PersistedState> between = ParseState(ReadFile(temp / "state.json"));
    REQUIRE(between.ok());
    CHECK(between->rules.at("api").since == FromMillis(i));
    CHECK_FALSE(std::filesystem::exists(temp / "state.json.tmp"));
  }

  struct stat after {};
  REQUIRE(::stat((temp / "state.json").c_str(), &after) == 0);
  CHECK(before.st_ino != after.st_ino);
  std::stringstream old_contents;
  old_contents << reader.rdbuf();
  Result<PersistedState> old_state = ParseState(old_contents.str());
  REQUIRE(old_state.ok());
  CHECK(*old_state == first);
}

TEST_CASE("a failed save reports the error and leaves the old state", "[state_store]") {
  TempDir temp;
  const std::string dir = temp / "state";
  Result<StateStore> store = StateStore::Open(dir);
  REQUIRE(store.ok());
  // The directory disappears under the daemon.
  REQUIRE(std::filesystem::remove(dir));
  Status saved = store->Save(SampleState());
  REQUIRE_FALSE(saved.ok());
  CHECK_THAT(saved.error().message, Catch::Contains(dir + "/state.json.tmp"));
}

TEST_CASE("a deploy version that is not valid UTF-8 is saved, not thrown on", "[state_store]") {
  PersistedState state;
  state.deploys["api"] = DeployRecord{"v1\xff", FromMillis(1)};
  Result<PersistedState> parsed = ParseState(SerializeState(state));
  REQUIRE(parsed.ok());
  CHECK(parsed->deploys.at("api").version == "v1\xef\xbf\xbd");  // U+FFFD replaces the byte
}
