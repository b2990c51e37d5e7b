#include "daemon/action_journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "action_journal_test.XXXXXX");
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void AppendRaw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << bytes;
}

// 2026-11-23T12:00:00.000Z
constexpr int64_t kNoon = 1'795'435'200'000;

JournalRecord Decided(const std::string& id, int64_t ms) {
  JournalRecord record;
  record.time = FromMillis(ms);
  record.phase = JournalPhase::kDecided;
  record.id = id;
  record.rule = "api";
  record.action = "rollback_api";
  record.grade = "critical";
  record.previous_grade = "warning";
  record.decision = "executed";
  record.incident = "inc-1";
  record.reason = "api_errors > 10% for 5m";
  record.breaker = "";
  return record;
}

JournalRecord Finished(const std::string& id, int64_t ms) {
  JournalRecord record = Decided(id, ms);
  record.phase = JournalPhase::kFinished;
  record.result = "failed";
  record.exit_code = 3;
  record.duration_seconds = 1.25;
  return record;
}

}  // namespace

TEST_CASE("a decided record is one line with the documented field names", "[journal]") {
  JournalRecord record = Decided("1795435200000-00beef", kNoon);
  record.decision = "suppressed_breaker";
  record.open_until = FromMillis(kNoon) + 30min;
  const std::string line = FormatJournalLine(record);
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line == R"({"time":"2026-11-23T12:00:00.000Z","ts_ms":1795435200000,"phase":"decided",)"
                R"("id":"1795435200000-00beef","rule":"api","action":"rollback_api",)"
                R"("grade":"critical","previous_grade":"warning","decision":"suppressed_breaker",)"
                R"("incident":"inc-1","reason":"api_errors > 10% for 5m","breaker":"",)"
                R"("open_until":"2026-11-23T12:30:00.000Z"})");
}

TEST_CASE("a finished record adds result, exit code or signal, and duration", "[journal]") {
  const std::string exited = FormatJournalLine(Finished("id-1", kNoon));
  CHECK_THAT(exited, Catch::Contains(R"("phase":"finished")"));
  CHECK_THAT(exited,
             Catch::EndsWith(R"("result":"failed","exit_code":3,"duration_seconds":1.25})"));

  JournalRecord killed = Finished("id-2", kNoon);
  killed.result = "timeout";
  killed.exit_code.reset();
  killed.signal = 15;
  const std::string line = FormatJournalLine(killed);
  CHECK_THAT(line, Catch::Contains(R"("result":"timeout","signal":15)"));
  CHECK(line.find("exit_code") == std::string::npos);

  JournalRecord unrunnable = Finished("id-3", kNoon);
  unrunnable.exit_code.reset();
  unrunnable.error = "cannot execute /nope: No such file or directory";
  CHECK_THAT(FormatJournalLine(unrunnable),
             Catch::Contains(R"("error":"cannot execute /nope: No such file or directory")"));
  // Finished-only fields never appear on a decision.
  CHECK(FormatJournalLine(Decided("id-4", kNoon)).find("result") == std::string::npos);
}

TEST_CASE("journal lines parse back into the same record", "[journal]") {
  JournalRecord decided = Decided("a", kNoon + 7);
  decided.open_until = FromMillis(kNoon + 1'800'123);
  JournalRecord finished = Finished("a", kNoon + 1'257);
  finished.signal = 9;
  finished.error = "killed";
  for (const JournalRecord& record : {decided, finished}) {
    Result<JournalRecord> parsed = ParseJournalLine(FormatJournalLine(record));
    REQUIRE(parsed.ok());
    CHECK(*parsed == record);
  }
}

TEST_CASE("journal lines without ts_ms, phase or id are rejected", "[journal]") {
  CHECK_FALSE(ParseJournalLine(R"({"phase":"decided","id":"x"})").ok());
  CHECK_FALSE(ParseJournalLine(R"({"ts_ms":1,"phase":"started","id":"x"})").ok());
  CHECK_FALSE(ParseJournalLine(R"({"ts_ms":1,"phase":"decided"})").ok());
  CHECK_FALSE(ParseJournalLine(R"({"ts_ms":1,"phase":"decided","id":"x","rule":7})").ok());
  CHECK_FALSE(ParseJournalLine("[1,2]").ok());
  Result<JournalRecord> minimal =
      ParseJournalLine(R"({"ts_ms":1,"phase":"decided","id":"x","later_field":true})");
  REQUIRE(minimal.ok());
  CHECK(minimal->id == "x");
}

TEST_CASE("appended records read back in order, across reopening", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  {
    Result<ActionJournal> journal = ActionJournal::Open(path);
    REQUIRE(journal.ok());
    CHECK(journal->torn_bytes_dropped() == 0);
    REQUIRE(journal->Append(Decided("1", kNoon)).ok());
    REQUIRE(journal->Append(Finished("1", kNoon + 1'000)).ok());
  }
  {
    Result<ActionJournal> journal = ActionJournal::Open(path);
    REQUIRE(journal.ok());
    REQUIRE(journal->Append(Decided("2", kNoon + 2'000)).ok());
  }
  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK_FALSE(report.torn_tail);
  REQUIRE(records->size() == 3);
  CHECK((*records)[0] == Decided("1", kNoon));
  CHECK((*records)[1] == Finished("1", kNoon + 1'000));
  CHECK((*records)[2] == Decided("2", kNoon + 2'000));

  const std::string contents = ReadFile(path);
  CHECK(std::count(contents.begin(), contents.end(), '\n') == 3);
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777 & ~0640) == 0);
}

TEST_CASE("a missing journal has no records", "[journal]") {
  TempDir temp;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(temp / "actions.jsonl");
  REQUIRE(records.ok());
  CHECK(records->empty());
}

TEST_CASE("a truncated last line from a crash mid-write is skipped and reported", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  {
    Result<ActionJournal> journal = ActionJournal::Open(path);
    REQUIRE(journal.ok());
    REQUIRE(journal->Append(Decided("1", kNoon)).ok());
    REQUIRE(journal->Append(Decided("2", kNoon + 1)).ok());
  }
  const std::string whole = FormatJournalLine(Decided("3", kNoon + 2));
  AppendRaw(path, whole.substr(0, whole.size() / 2));

  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK(records->size() == 2);
  CHECK(report.torn_tail);
  CHECK(report.torn_line == 3);
  CHECK_FALSE(report.torn_error.empty());

  // Without a report the torn line is still skipped.
  Result<std::vector<JournalRecord>> quiet = ActionJournal::ReadAll(path);
  REQUIRE(quiet.ok());
  CHECK(quiet->size() == 2);
}

TEST_CASE("a complete last line missing only its newline still counts as torn", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  AppendRaw(path, FormatJournalLine(Decided("1", kNoon)) + "\n");
  AppendRaw(path, FormatJournalLine(Decided("2", kNoon)));  // never confirmed
  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK(records->size() == 1);
  CHECK(report.torn_tail);
  CHECK(report.torn_line == 2);
}

TEST_CASE("a last line of zeros (a crash after the file grew) is skipped", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  AppendRaw(path, FormatJournalLine(Decided("1", kNoon)) + "\n");
  std::string zeros(40, '\0');
  zeros += '\n';
  AppendRaw(path, zeros);
  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK(records->size() == 1);
  CHECK(report.torn_tail);

  Result<ActionJournal> journal = ActionJournal::Open(path);
  REQUIRE(journal.ok());
  CHECK(journal->torn_bytes_dropped() == 41);
}

TEST_CASE("opening a journal drops a torn last line so appends follow whole records", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  const std::string first = FormatJournalLine(Decided("1", kNoon)) + "\n";
  const std::string torn = FormatJournalLine(Decided("2", kNoon)).substr(0, 30);
  AppendRaw(path, first + torn);

  Result<ActionJournal> journal = ActionJournal::Open(path);
  REQUIRE(journal.ok());
  CHECK(journal->torn_bytes_dropped() == torn.size());
  CHECK(ReadFile(path) == first);
  REQUIRE(journal->Append(Decided("3", kNoon + 5)).ok());

  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK_FALSE(report.torn_tail);
  REQUIRE(records->size() == 2);
  CHECK((*records)[1].id == "3");
}

TEST_CASE("a torn line longer than the tail read at open is still dropped whole", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  const std::string first = FormatJournalLine(Decided("1", kNoon)) + "\n";
  JournalRecord big = Decided("2", kNoon);
  big.reason = std::string(200'000, 'x');
  const std::string torn = FormatJournalLine(big).substr(0, 150'000);
  AppendRaw(path, first + torn);

  Result<ActionJournal> journal = ActionJournal::Open(path);
  REQUIRE(journal.ok());
  CHECK(journal->torn_bytes_dropped() == torn.size());
  CHECK(ReadFile(path) == first);
}

TEST_CASE("corruption in the middle of the journal is an error naming the line", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  AppendRaw(path, FormatJournalLine(Decided("1", kNoon)) + "\n");
  AppendRaw(path, "{\"ts_ms\": 1, garbage\n");
  AppendRaw(path, FormatJournalLine(Decided("3", kNoon)) + "\n");

  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path);
  REQUIRE_FALSE(records.ok());
  CHECK_THAT(records.error().message, Catch::StartsWith(path + ":2: "));

  // Opening for append leaves the file alone: the bad line is not the last one.
  Result<ActionJournal> journal = ActionJournal::Open(path);
  REQUIRE(journal.ok());
  CHECK(journal->torn_bytes_dropped() == 0);
}

TEST_CASE("blank lines in the journal are ignored", "[journal]") {
  TempDir temp;
  const std::string path = temp / "actions.jsonl";
  AppendRaw(path, FormatJournalLine(Decided("1", kNoon)) + "\n\n");
  AppendRaw(path, FormatJournalLine(Decided("2", kNoon)) + "\n\n");
  JournalReadReport report;
  Result<std::vector<JournalRecord>> records = ActionJournal::ReadAll(path, &report);
  REQUIRE(records.ok());
  CHECK(records->size() == 2);
  CHECK_FALSE(report.torn_tail);
}

TEST_CASE("a journal that cannot be opened is an error naming it", "[journal]") {
  TempDir temp;
  Result<ActionJournal> journal = ActionJournal::Open(temp / "missing/actions.jsonl");
  REQUIRE_FALSE(journal.ok());
  CHECK_THAT(journal.error().message, Catch::Contains(temp / "missing/actions.jsonl"));
}

TEST_CASE("record ids start with the decision time and do not repeat", "[journal]") {
  TempDir temp;
  Result<ActionJournal> journal = ActionJournal::Open(temp / "actions.jsonl");
  REQUIRE(journal.ok());
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = journal->NewId(FromMillis(kNoon));
    CHECK_THAT(id, Catch::StartsWith("1795435200000-"));
    CHECK(id.size() == std::string("1795435200000-").size() + 6);
    ids.insert(id);
  }
  CHECK(ids.size() == 1000);
}
