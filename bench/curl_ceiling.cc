// The ceiling for HTTP probe throughput: a bare libcurl multi loop, nothing else.
//
//   curl_ceiling URL [CONCURRENCY=64] [SECONDS=5]
//
// Keeps CONCURRENCY GET requests in flight on one thread for SECONDS, each easy handle
// re-added as soon as it finishes, so every connection is reused (the multi handle's
// cache). No parsing, no rules, no scheduling: what rollguard's probes add on top of the
// same library shows up as the gap to this figure. Prints one JSON line:
//   {"requests": N, "failed": N, "seconds": S, "cpu_seconds": S, "new_connections": N}
// CPU time is this process's own (RUSAGE_SELF: user + system).
#include <curl/curl.h>
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double Now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The body is counted, not kept: the ceiling should not pay for storage either.
size_t Discard(char* /*data*/, size_t size, size_t count, void* /*user*/) { return size * count; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: curl_ceiling URL [CONCURRENCY] [SECONDS]\n");
    return 2;
  }
  const char* url = argv[1];
  const int concurrency = argc > 2 ? std::atoi(argv[2]) : 64;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 5.0;
  if (concurrency <= 0 || seconds <= 0) {
    std::fprintf(stderr, "curl_ceiling: CONCURRENCY and SECONDS must be positive\n");
    return 2;
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(concurrency));
  std::vector<CURL*> handles;
  for (int i = 0; i < concurrency; ++i) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Discard);
    curl_multi_add_handle(multi, easy);
    handles.push_back(easy);
  }

  long requests = 0;  // NOLINT(runtime/int)
  long failed = 0;    // NOLINT(runtime/int)
  long connects = 0;  // NOLINT(runtime/int)
  const double cpu_start = CpuSeconds();
  const double start = Now();
  const double end = start + seconds;
  int active = concurrency;
  while (active > 0) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      if (message->data.result == CURLE_OK) {
        ++requests;
      } else {
        ++failed;
      }
      long new_connections = 0;  // NOLINT(runtime/int)
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
      connects += new_connections;
      curl_multi_remove_handle(multi, easy);
      if (Now() < end) {
        curl_multi_add_handle(multi, easy);
      } else {
        --active;
      }
    }
    if (active > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  const double elapsed = Now() - start;
  const double cpu = CpuSeconds() - cpu_start;
  std::printf(
      "{\"requests\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"cpu_seconds\": %.3f, "
      "\"new_connections\": %ld}\n",
      requests, failed, elapsed, cpu, connects);

  for (CURL* easy : handles) curl_easy_cleanup(easy);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return failed > requests ? 1 : 0;
}
