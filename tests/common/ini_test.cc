#include "common/ini.h"

#include <catch2/catch.hpp>

#include "common/strings.h"

using namespace rollguard;

TEST_CASE("ini keeps sections, repeated keys and their line numbers", "[ini]") {
  const auto doc = ParseIni(
      "# comment\n"
      "[daemon]\n"
      "include = a/*.rules ; inline comment\n"
      "include = b/*.rules\n"
      "\n"
      "[probe api]\n"
      "[rule api]\n"
      "critical = not api for 30s\n",
      "main.conf");
  REQUIRE(doc.ok());
  REQUIRE(doc->sections.size() == 3);
  CHECK(doc->sections[0].kind == "daemon");
  CHECK(doc->sections[0].name.empty());
  REQUIRE(doc->sections[0].entries.size() == 2);
  CHECK(doc->sections[0].entries[0].value == "a/*.rules");
  CHECK(doc->sections[0].entries[1].where.ToString() == "main.conf:4");
  CHECK(doc->sections[1].kind == "probe");
  CHECK(doc->sections[1].name == "api");
  CHECK(doc->sections[1].entries.empty());
  CHECK(doc->sections[2].where.line == 7);
  CHECK(doc->sections[2].entries[0].value == "not api for 30s");
}

TEST_CASE("indented lines continue the previous value; a repeated key stays separate", "[ini]") {
  const auto doc = ParseIni(
      "[probe errors]\n"
      "query = sum(rate(http_requests_total{code=~\"5..\"}[5m]))\n"
      "   / sum(rate(http_requests_total[5m])) ; the error ratio\n"
      "header = A: 1\n"
      "header = B: 2\n",
      "p.rules");
  REQUIRE(doc.ok());
  const auto& entries = doc->sections[0].entries;
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].value ==
        "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))");
  CHECK(entries[0].where.line == 2);
  CHECK(entries[1].value == "A: 1");
  CHECK(entries[2].value == "B: 2");
}

TEST_CASE("ini errors name the file and line", "[ini]") {
  auto doc = ParseIni("[rule a]\ngood = x\nthis line has no equals sign\n", "r.rules");
  REQUIRE_FALSE(doc.ok());
  CHECK_THAT(doc.error().message, Catch::StartsWith("r.rules:3: expected"));

  doc = ParseIni("key = value\n", "top.conf");
  REQUIRE_FALSE(doc.ok());
  CHECK_THAT(doc.error().message, Catch::StartsWith("top.conf:1: key \"key\" is outside"));

  doc = ParseIni("[rule a]\ngood = " + std::string(300, 'x') + "\n", "long.rules");
  REQUIRE_FALSE(doc.ok());
  CHECK_THAT(doc.error().message, Catch::StartsWith("long.rules:2: line is 307 characters"));

  doc = ParseIni("[rule a b c]\n", "h.rules");
  REQUIRE_FALSE(doc.ok());
  CHECK_THAT(doc.error().message, Catch::StartsWith("h.rules:1: expected a section header"));
}

TEST_CASE("command lines split like a shell without expansion", "[strings]") {
  auto split = SplitCommandLine(R"(/bin/echo 'a b' "c \"d\"" e\ f $HOME)");
  REQUIRE(split.error.empty());
  CHECK(split.argv == std::vector<std::string>{"/bin/echo", "a b", "c \"d\"", "e f", "$HOME"});
  CHECK(SplitCommandLine("echo 'open").error == "unterminated single quote");
  CHECK(SplitCommandLine("   ").error == "empty command");
}

TEST_CASE("names are lowercase identifiers", "[strings]") {
  CHECK(IsValidName("api_v2"));
  CHECK_FALSE(IsValidName("Api"));
  CHECK_FALSE(IsValidName("2api"));
  CHECK_FALSE(IsValidName("api-v2"));
  CHECK_FALSE(IsValidName(""));
}

TEST_CASE("lines longer than inih's buffer arrive whole", "[ini]") {
  std::string words;
  for (int i = 0; i < 120; ++i) words += (i ? " " : "") + std::string("w") + std::to_string(i);
  std::string comment = "# " + std::string(400, 'c');
  const auto doc = ParseIni(
      "[action a]\n" + comment + "\ncommand = " + words + " ; a trailing comment\nnext = 1\n",
      "long.rules");
  REQUIRE(doc.ok());
  const auto& entries = doc->sections[0].entries;
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].key == "command");
  CHECK(entries[0].value == words);
  CHECK(entries[0].where.line == 3);
  CHECK(entries[1].where.line == 4);
}
