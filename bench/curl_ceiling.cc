// The ceiling for HTTP probe throughput: a bare libcurl multi loop, nothing else.
//
//   curl_ceiling URL [CONCURRENCY=64] [SECONDS=5] [bare|probe-setup]
//
// Keeps CONCURRENCY GET requests in flight on one thread for SECONDS, each easy handle
// re-added as soon as it finishes, so every connection is reused (the multi handle's
// cache). No parsing, no rules, no scheduling: what rollguard's probes add on top of the
// same library shows up as the gap to this figure.
//
// With `probe-setup`, each request pays what an http probe asks of libcurl per run and
// nothing else: the handle reset and every option set again (as probes/http_probe.cc's
// Configure does for a GET), the body kept, the timings read back. The gap between the
// two modes is libcurl's cost of a probe's configuration; what is left between this one
// and rollguard is rollguard's own. Prints one JSON line:
//   {"requests": N, "failed": N, "seconds": S, "cpu_seconds": S, "new_connections": N}
// CPU time is this process's own (RUSAGE_SELF: user + system).
#include <curl/curl.h>
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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

// What one transfer in probe-setup mode keeps, as an http probe's transfer does.
struct Transfer {
  std::string body;
  char error[CURL_ERROR_SIZE] = {};
};

size_t Keep(char* data, size_t size, size_t count, void* transfer) {
  static_cast<Transfer*>(transfer)->body.append(data, size * count);
  return size * count;
}

size_t Header(char* /*data*/, size_t size, size_t count, void* /*transfer*/) {
  return size * count;
}

void ConfigureBare(CURL* easy, const char* url) {
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Discard);
}

// The options probes/http_probe.cc sets for a GET with default settings, in its order.
void ConfigureAsProbe(CURL* easy, const char* url, Transfer& transfer, curl_slist* headers) {
  curl_easy_reset(easy);
  transfer.body.clear();
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(1 << 20));
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "rollguard/bench");
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Keep);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
}

// The timings and status an http probe reads back from every finished transfer.
void ReadBackAsProbe(CURL* easy) {
  curl_off_t value = 0;
  for (CURLINFO info :
       {CURLINFO_TOTAL_TIME_T, CURLINFO_NAMELOOKUP_TIME_T, CURLINFO_CONNECT_TIME_T,
        CURLINFO_APPCONNECT_TIME_T, CURLINFO_STARTTRANSFER_TIME_T, CURLINFO_PRETRANSFER_TIME_T}) {
    curl_easy_getinfo(easy, info, &value);
  }
  long status = 0;  // NOLINT(runtime/int): curl's type
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: curl_ceiling URL [CONCURRENCY] [SECONDS] [bare|probe-setup]\n");
    return 2;
  }
  const char* url = argv[1];
  const int concurrency = argc > 2 ? std::atoi(argv[2]) : 64;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 5.0;
  const bool as_probe = argc > 4 && std::strcmp(argv[4], "probe-setup") == 0;
  if (argc > 4 && !as_probe && std::strcmp(argv[4], "bare") != 0) {
    std::fprintf(stderr, "curl_ceiling: the mode is bare or probe-setup\n");
    return 2;
  }
  if (concurrency <= 0 || seconds <= 0) {
    std::fprintf(stderr, "curl_ceiling: CONCURRENCY and SECONDS must be positive\n");
    return 2;
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(concurrency));
  curl_slist* headers = curl_slist_append(nullptr, "Accept: */*");
  std::vector<CURL*> handles;
  std::vector<Transfer> transfers(static_cast<size_t>(concurrency));
  auto configure = [&](CURL* easy, size_t slot) {
    if (as_probe) {
      ConfigureAsProbe(easy, url, transfers[slot], headers);
      // The reset dropped it: which slot (transfer) this handle serves.
      curl_easy_setopt(easy, CURLOPT_PRIVATE, reinterpret_cast<void*>(slot));
    } else {
      ConfigureBare(easy, url);
    }
  };
  for (int i = 0; i < concurrency; ++i) {
    CURL* easy = curl_easy_init();
    const auto slot = static_cast<size_t>(i);
    configure(easy, slot);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, reinterpret_cast<void*>(slot));
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
        if (as_probe) {
          ReadBackAsProbe(easy);
          void* slot = nullptr;
          curl_easy_getinfo(easy, CURLINFO_PRIVATE, &slot);
          configure(easy, reinterpret_cast<size_t>(slot));
        }
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
  curl_slist_free_all(headers);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return failed > requests ? 1 : 0;
}
