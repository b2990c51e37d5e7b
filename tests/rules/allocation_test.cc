// Evaluating a compiled expression must not allocate: the daemon evaluates every rule on
// every probe result. Allocations are counted through the sanitizer's malloc hooks in
// ASan builds and by replacing operator new otherwise.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>

#include "rules/program.h"

#if defined(__SANITIZE_ADDRESS__)
// From <sanitizer/allocator_interface.h>, which GCC does not install; libasan exports it.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));
#endif

namespace {

bool g_counting = false;
long g_allocations = 0;

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
namespace {

void CountMalloc(const volatile void* /*ptr*/, size_t /*size*/) {
  if (g_counting) ++g_allocations;
}
void IgnoreFree(const volatile void* /*ptr*/) {}

bool InstallHooks() {
  static const bool installed =
      __sanitizer_install_malloc_and_free_hooks(CountMalloc, IgnoreFree) != 0;
  return installed;
}

}  // namespace
#else
void* operator new(size_t size) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t /*size*/) noexcept { std::free(p); }
namespace {
bool InstallHooks() { return true; }
}  // namespace
#endif

using namespace rollguard;

TEST_CASE("evaluating a compiled expression allocates nothing", "[rules][allocation]") {
  REQUIRE(InstallHooks());
  std::vector<ProbeData> probes(2);
  probes[0].name = "api";
  probes[0].type = FindProbeType("http");
  probes[0].interval = std::chrono::seconds(10);
  probes[1].name = "svc";
  probes[1].type = FindProbeType("systemd");
  probes[1].interval = std::chrono::seconds(10);
  ExprParse parsed = ParseExpression(
      "p95(api.latency, 5m) > 1 or ratio(api.status >= 500 and api.latency > 0.1, 5m) > 10% "
      "and not absent(api.status) or svc.state == \"failed\" or avg(api.latency, 1m) + "
      "age(api) * 2 > 3 or changes(svc.state, 5m) > 1 or min(api.latency, 1m) < -1 or "
      "max(api.latency, 1m) / count(api.json.x, 5m) > 9 and api.json.x == \"ok\"",
      true);
  REQUIRE_FALSE(parsed.error.has_value());
  std::vector<int32_t> read;
  ExprError error;
  REQUIRE(BindExpression(&parsed.expr, true, &probes, &read, &error));
  for (ProbeData& probe : probes) {
    probe.retention =
        std::max(std::chrono::duration_cast<Duration>(std::chrono::minutes(5)), 2 * probe.interval);
    probe.history.emplace(probe.slots.size(), probe.retention, 1000);
  }
  for (int i = 0; i < 100; ++i) {
    const TimePoint t{std::chrono::seconds(10 * i)};
    for (ProbeData& probe : probes) {
      Cell* cells = probe.history->Append(t);
      probe.reported = true;
      probe.last_report = t;
      for (size_t s = 0; s < probe.slots.size(); ++s) {
        const std::string& slot = probe.slots[s];
        if (slot == "state" || slot == "json.x") {
          cells[s].kind = Cell::Kind::kString;
          cells[s].text = i % 3 != 0 ? "active" : "failed";
        } else {
          cells[s].kind = Cell::Kind::kNumber;
          cells[s].number = (i % 7) * 0.1 + (slot == "status" ? 200 + (i % 4) * 100 : 0);
        }
      }
    }
  }
  std::vector<double> scratch;
  scratch.reserve(1000);
  EvalContext context{&probes, TimePoint{std::chrono::seconds(990)}, &scratch};
  int held = 0;
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 1000; ++i) {
    held += EvaluateTruth(parsed.expr, parsed.expr.root, context) == Truth::kTrue ? 1 : 0;
  }
  g_counting = false;
  CHECK(g_allocations == 0);
  CHECK(held == 1000);
}
