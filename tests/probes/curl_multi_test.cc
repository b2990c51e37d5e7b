// CurlMulti and the Probe run contract: cancelling, removing from callbacks, tearing down
// with transfers in flight (leak-free under ASan), connection reuse.
#include "probes/curl_multi.h"

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "probes/probe.h"
#include "tests/probes/probe_test_util.h"
#include "tests/probes/test_server.h"

using namespace rollguard;
using namespace rollguard::testing;

namespace {

size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }

CURL* NewTransfer(const std::string& url) {
  CURL* easy = curl_easy_init();
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Discard);
  return easy;
}

// A queued GET of `url`, named by `key`, reporting its code to `done`.
bool Queue(CurlMulti& multi, const void* key, const std::string& url, Duration timeout,
           std::function<void(int)> done) {
  const std::string origin = url.substr(0, url.find('/', url.find("//") + 2));
  return multi.AddQueued(
      key, origin, timeout,
      [url](CURL* easy) {
        return curl_easy_setopt(easy, CURLOPT_URL, url.c_str()) == CURLE_OK &&
               curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
               curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Discard) == CURLE_OK;
      },
      [done = std::move(done)](CURL*, int code) { done(code); });
}

// Keys for queued transfers: opaque, never dereferenced.
const void* Key(size_t i) { return reinterpret_cast<const void*>(uintptr_t{i + 1}); }

}  // namespace

TEST_CASE("curl multi: a completion may remove another transfer in flight", "[curl]") {
  TestServer fast(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  TestServer slow([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  EventLoop loop;
  CurlMulti multi(loop.get());
  CURL* quick = NewTransfer(fast.Url("/"));
  CURL* hanging = NewTransfer(slow.Url("/"));
  std::optional<int> quick_code;
  bool hanging_called = false;
  REQUIRE(multi.Add(hanging, [&](int) { hanging_called = true; }));
  REQUIRE(multi.Add(quick, [&](int code) {
    quick_code = code;
    multi.Remove(hanging);  // from inside a completion
    curl_easy_cleanup(hanging);
    curl_easy_cleanup(quick);  // its own handle: already out of the multi handle
  }));
  CHECK(multi.active() == 2);
  REQUIRE(loop.RunUntil([&] { return quick_code.has_value(); }));
  CHECK(*quick_code == CURLE_OK);
  CHECK(multi.active() == 0);
  loop.RunFor(std::chrono::milliseconds(200));
  CHECK_FALSE(hanging_called);
}

TEST_CASE("curl multi: destroying it with transfers in flight calls nothing and leaks nothing",
          "[curl]") {
  TestServer slow([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  EventLoop loop;
  CURL* easy = NewTransfer(slow.Url("/"));
  bool called = false;
  {
    CurlMulti multi(loop.get());
    REQUIRE(multi.Add(easy, [&](int) { called = true; }));
    loop.RunFor(std::chrono::milliseconds(200));  // connected, waiting
    CHECK(slow.connections() == 1);
  }
  loop.RunFor(std::chrono::milliseconds(100));
  CHECK_FALSE(called);
  curl_easy_cleanup(easy);
}

TEST_CASE("curl multi: answers that arrive together are taken in one loop iteration", "[curl]") {
  // Every connection's answer is held until all requests are in, then written at once,
  // while the loop is not running: when it next runs, every socket is readable. Taken one
  // socket per loop iteration (an sd-event source per socket) that was one iteration per
  // answer.
  constexpr int kTransfers = 32;
  std::mutex mutex;
  std::condition_variable all_in;
  int arrived = 0;
  std::atomic<int> written{0};
  TestServer server([&](const HttpRequest&, Connection& connection) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      ++arrived;
      all_in.notify_all();
      all_in.wait(lock, [&] { return arrived >= kTransfers; });
    }
    connection.Write(Response(200, "ok"));
    ++written;
  });
  EventLoop loop;
  CurlMulti multi(loop.get());
  std::vector<CURL*> handles;
  int completed = 0;
  for (int i = 0; i < kTransfers; ++i) {
    handles.push_back(NewTransfer(server.Url("/")));
    REQUIRE(multi.Add(handles.back(), [&completed](int code) {
      CHECK(code == CURLE_OK);
      ++completed;
    }));
  }
  // Until every request is out; no answer can come before that.
  REQUIRE(loop.RunUntil([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return arrived == kTransfers;
  }));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (written < kTransfers && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(written == kTransfers);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // through loopback

  uint64_t before = 0;
  REQUIRE(sd_event_get_iteration(loop.get(), &before) >= 0);
  REQUIRE(loop.RunUntil([&] { return completed == kTransfers; }));
  uint64_t after = 0;
  REQUIRE(sd_event_get_iteration(loop.get(), &after) >= 0);
  CHECK(after - before <= 2);
  for (CURL* easy : handles) curl_easy_cleanup(easy);
}

TEST_CASE("curl multi: queued transfers wait their turn per origin, waiting counts as time",
          "[curl]") {
  TestServer slow([](const HttpRequest&, Connection& connection) { connection.Hang(); });
  EventLoop loop;
  CurlMulti multi(loop.get());
  const size_t slots = static_cast<size_t>(CurlMulti::kMaxHostConnections);
  std::vector<std::optional<int>> codes(slots + 3);
  for (size_t i = 0; i < slots + 3; ++i) {
    REQUIRE(Queue(multi, Key(i), slow.Url("/"), std::chrono::milliseconds(400),
                  [&codes, i](int code) { codes[i] = code; }));
  }
  CHECK(multi.waiting() == 3);
  // Only the transfers in curl hold a handle; the waiting ones have none yet.
  CHECK(multi.easy_handles() == slots);
  multi.Remove(Key(slots + 1));  // from the middle of the queue
  CHECK(multi.waiting() == 2);
  CHECK(multi.active() == slots + 2);

  const auto start = std::chrono::steady_clock::now();
  REQUIRE(loop.RunUntil([&] { return multi.active() == 0; }));
  const auto took = std::chrono::steady_clock::now() - start;
  // Every run timed out within its own 400 ms, waiting included: the queued ones did not
  // get a fresh 400 ms once the first ones gave up their connections.
  CHECK(took < std::chrono::milliseconds(1500));
  for (size_t i = 0; i < codes.size(); ++i) {
    if (i == slots + 1) {
      CHECK_FALSE(codes[i].has_value());
    } else {
      REQUIRE(codes[i].has_value());
      CHECK(*codes[i] == CURLE_OPERATION_TIMEDOUT);
    }
  }
  CHECK(static_cast<size_t>(slow.connections()) <= slots);
}

TEST_CASE("curl multi: once the oldest waited half its time, the newest goes first", "[curl]") {
  TestServer server([](const HttpRequest& request, Connection& connection) {
    if (request.target == "/hang") connection.Hang();
    connection.Write(Response(200, "ok"));
  });
  EventLoop loop;
  {
    CurlMulti multi(loop.get());
    std::vector<std::string> finished;
    size_t added = 0;
    auto add = [&](const std::string& path, int timeout_ms, const std::string& name) {
      REQUIRE(Queue(multi, Key(added++), server.Url(path), std::chrono::milliseconds(timeout_ms),
                    [&finished, name](int code) {
                      if (!name.empty()) {
                        finished.push_back(name + (code == CURLE_OK ? " ok" : " failed"));
                      }
                    }));
    };
    // Every connection busy: one frees at 400 ms, the others hold on for 10 s.
    add("/hang", 400, "");
    for (long i = 1; i < CurlMulti::kMaxHostConnections; ++i) add("/hang", 10'000, "");
    add("/ok", 700, "oldest");    // at 400 ms it has used more than half its 700 ms
    add("/ok", 5'000, "newest");  // plenty left
    REQUIRE(multi.waiting() == 2);

    REQUIRE(loop.RunUntil([&] { return finished.size() == 2; }, std::chrono::seconds(5)));
    // The one freed connection served the newest first, then the oldest with what it had
    // left; first come first served would have taken them the other way round.
    CHECK(finished == std::vector<std::string>{"newest ok", "oldest ok"});
  }
}

TEST_CASE("curl multi: a queue longer than the connections is served on reused connections",
          "[curl]") {
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  EventLoop loop;
  CurlMulti multi(loop.get());
  constexpr size_t kTransfers = 300;
  size_t ok = 0;
  for (size_t i = 0; i < kTransfers; ++i) {
    REQUIRE(Queue(multi, Key(i), server.Url("/"), std::chrono::seconds(20), [&ok](int code) {
      if (code == CURLE_OK) ++ok;
    }));
  }
  CHECK(multi.waiting() == kTransfers - static_cast<size_t>(CurlMulti::kMaxHostConnections));
  REQUIRE(loop.RunUntil([&] { return multi.active() == 0; }));
  CHECK(ok == kTransfers);
  CHECK(server.connections() <= CurlMulti::kMaxHostConnections);
  // Handed back as each finished: at most the pool's worth stays.
  CHECK(multi.easy_handles() <= CurlMulti::kMaxIdleEasyHandles);
}

TEST_CASE("probes: Cancel() abandons a run, done is never called, the probe runs again", "[curl]") {
  TestServer slow([](const HttpRequest& request, Connection& connection) {
    if (request.target == "/hang") connection.Hang();
    connection.Write(Response(200, "ok"));
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto hanging =
      MustParse("[probe a]\ntype = http\nurl = " + slow.Url("/hang") + "\n")->Instantiate(context);
  bool called = false;
  hanging->Start([&](ProbeResult) { called = true; });
  loop.RunFor(std::chrono::milliseconds(200));
  hanging->Cancel();
  hanging->Cancel();  // idempotent
  loop.RunFor(std::chrono::milliseconds(200));
  CHECK_FALSE(called);
  CHECK(context.curl().active() == 0);

  auto probe =
      MustParse("[probe b]\ntype = http\nurl = " + slow.Url("/ok") + "\n")->Instantiate(context);
  probe->Start([](ProbeResult) { FAIL("cancelled run reported"); });
  probe->Cancel();
  CHECK(RunOnce(loop, *probe).result.up);
  // A probe destroyed mid-run leaves nothing behind in the multi handle.
  probe->Start([](ProbeResult) { FAIL("destroyed probe reported"); });
  probe.reset();
  CHECK(context.curl().active() == 0);
}

TEST_CASE("probes: done may start the next run, connections are reused across runs and probes",
          "[curl]") {
  TestServer server(
      [](const HttpRequest&, Connection& connection) { connection.Write(Response(200, "ok")); });
  EventLoop loop;
  ProbeContext context(loop.get());
  auto first =
      MustParse("[probe a]\ntype = http\nurl = " + server.Url("/a") + "\n")->Instantiate(context);
  auto second =
      MustParse("[probe b]\ntype = http\nurl = " + server.Url("/b") + "\n")->Instantiate(context);
  int runs = 0;
  ProbeDone again = [&](ProbeResult result) {
    CHECK(result.up);
    if (++runs < 5) first->Start(again);  // re-entrant start from inside done
  };
  first->Start(again);
  REQUIRE(loop.RunUntil([&] { return runs == 5; }));
  CHECK(RunOnce(loop, *second).result.up);
  CHECK(server.requests().size() == 6);
  CHECK(server.connections() == 1);
}

TEST_CASE("curl multi: a burst of runs to one host shares a few connections, all answered",
          "[curl]") {
  // Each answer takes 50ms, so all 200 runs are in flight at once.
  TestServer server([](const HttpRequest&, Connection& connection) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    connection.Write(Response(200, "ok"));
  });
  EventLoop loop;
  ProbeContext context(loop.get());
  const auto config = MustParse("[probe p]\ntype = http\nurl = " + server.Url("/health") + "\n");
  std::vector<std::unique_ptr<Probe>> probes;
  int answered = 0;
  int up = 0;
  for (int i = 0; i < 200; ++i) {
    probes.push_back(config->Instantiate(context));
    probes.back()->Start([&](ProbeResult result) {
      ++answered;
      if (result.up) ++up;
    });
  }
  REQUIRE(loop.RunUntil([&] { return answered == 200; }));
  CHECK(up == 200);
  CHECK(server.connections() <= CurlMulti::kMaxHostConnections);
  CHECK(server.requests().size() == 200);
}
