// Shared by the probe tests: a real sd-event loop, config parsing from INI text, running
// probes to completion, temporary folders and a self-signed certificate.
#pragma once

#include <systemd/sd-event.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "common/ini.h"
#include "probes/probe.h"

namespace rollguard::testing {

class EventLoop {
 public:
  EventLoop() { REQUIRE(sd_event_new(&event_) >= 0); }
  ~EventLoop() { sd_event_unref(event_); }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  sd_event* get() const { return event_; }

  // Runs the loop until `done()` or `limit` passes; false on the limit.
  template <typename Predicate>
  bool RunUntil(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(event_, 50 * 1000) >= 0);
    }
    return true;
  }

  // Runs the loop for `duration` whatever happens (to show that nothing more arrives).
  void RunFor(std::chrono::milliseconds duration) {
    const auto deadline = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < deadline) {
      REQUIRE(sd_event_run(event_, 10 * 1000) >= 0);
    }
  }

 private:
  sd_event* event_ = nullptr;
};

inline Result<std::shared_ptr<const ProbeConfig>> ParseProbe(const std::string& ini,
                                                             const std::string& base = "") {
  auto document = ParseIni(ini, "probes.conf");
  REQUIRE(document.ok());
  REQUIRE(document->sections.size() == 1);
  return ParseProbeSection(document->sections[0], ProbeParseContext{base});
}

inline std::shared_ptr<const ProbeConfig> MustParse(const std::string& ini,
                                                    const std::string& base = "") {
  auto config = ParseProbe(ini, base);
  if (!config.ok()) FAIL(config.error().message);
  return *config;
}

inline std::string ParseError(const std::string& ini, const std::string& base = "") {
  auto config = ParseProbe(ini, base);
  REQUIRE_FALSE(config.ok());
  return config.error().message;
}

struct TimedResult {
  ProbeResult result;
  double seconds = 0;  // from Start() to done
};

// Starts one run and drives the loop until it reports.
inline TimedResult RunOnce(EventLoop& loop, Probe& probe,
                           std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  std::optional<ProbeResult> result;
  const auto start = std::chrono::steady_clock::now();
  double seconds = 0;
  probe.Start([&](ProbeResult r) {
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result = std::move(r);
  });
  REQUIRE(loop.RunUntil([&] { return result.has_value(); }, limit));
  return {std::move(*result), seconds};
}

inline double Number(const ProbeResult& result, const std::string& field) {
  auto it = result.fields.find(field);
  if (it == result.fields.end()) FAIL("no field " << field);
  REQUIRE(std::holds_alternative<double>(it->second));
  return std::get<double>(it->second);
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rollguard-probes-XXXXXX");
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& contents) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << contents;
    return file;
  }

 private:
  std::string path_;
};

// Generates cert.pem / key.pem in `dir` with the openssl CLI: a self-signed certificate
// for 127.0.0.1 and localhost, valid for `days`.
inline void MakeSelfSignedCertificate(const TempDir& dir, int days) {
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256"
      " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -days " +
      std::to_string(days) + " -keyout '" + dir.path() + "/key.pem' -out '" + dir.path() +
      "/cert.pem' >/dev/null 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace rollguard::testing
