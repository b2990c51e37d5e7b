#!/usr/bin/python3
"""A small service to watch rollguard work on: GET /health on 127.0.0.1:18181.

It plays its own deploy pipeline. The running release is the first line of
RELEASE_DIR/current; a deploy writes a new version there and keeps the one before in
RELEASE_DIR/previous, which is what rollback.sh switches back to. How /health behaves
depends only on the running release and how long it has been running:

  1.4.2  healthy: ~20ms, 0.2% errors
  1.5.0  bad: slow (600ms, 3% errors) for 10s, then 503s with 25% errors
  1.5.1  broken: accepts connections and never answers

Scenario (seconds after start): 0 runs 1.4.2; 15 deploys 1.5.0; 50 deploys 1.5.1.
Only the standard library; prints one line per deploy or rollback it notices.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = "1.4.2"
SCENARIO = [(15, "1.5.0"), (50, "1.5.1")]  # (seconds after start, version deployed)


class Releases:
    """The release files: current (running) and previous (what a rollback restores)."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._seen = None
        self._since = time.monotonic()

    def _write(self, name, version):
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "w") as f:
            f.write(version + "\n")
        os.replace(path + ".tmp", path)

    def deploy(self, version):
        with self._lock:
            previous = self._read()
            self._write("previous", previous)
            self._write("current", version)
            self._seen = version
            self._since = time.monotonic()
        say(f"deploy: {previous} -> {version}")

    def install(self, version):
        self._write("current", version)
        self._write("previous", version)

    def _read(self):
        try:
            with open(os.path.join(self.directory, "current")) as f:
                return f.readline().strip() or GOOD
        except FileNotFoundError:
            return GOOD

    def running(self):
        """(version, seconds it has been running): notices rollbacks done by others."""
        version = self._read()
        with self._lock:
            if version != self._seen:
                if self._seen is not None:
                    say(f"now running {version} (was {self._seen})")
                self._seen = version
                self._since = time.monotonic()
            return version, time.monotonic() - self._since


def say(message):
    print(f"{time.strftime('%H:%M:%S')} [demo-service] {message}", flush=True)


def make_handler(releases):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.split("?", 1)[0] != "/health":
                return self.answer(404, {"error": "not found"})
            version, running_for = releases.running()
            if version == "1.5.1":
                # Hangs: the connection is open, no answer ever comes (until a rollback).
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and releases.running()[0] == version:
                    time.sleep(0.1)
                self.close_connection = True
                return
            if version == "1.5.0" and running_for >= 10:
                latency = random.uniform(0.05, 0.10)
                time.sleep(latency)
                return self.answer(503, {"status": "error", "version": version,
                                         "errors": 0.25, "latency_ms": round(latency * 1000)})
            if version == "1.5.0":
                latency = random.uniform(0.55, 0.65)
                errors = 0.03
            else:
                latency = random.uniform(0.010, 0.030)
                errors = 0.002
            time.sleep(latency)
            self.answer(200, {"status": "ok", "version": version, "errors": errors,
                              "latency_ms": round(latency * 1000)})

        def answer(self, status, document):
            body = json.dumps(document).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the prober gave up waiting

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument("--release-dir", required=True)
    args = parser.parse_args()

    releases = Releases(args.release_dir)
    releases.install(GOOD)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(releases))
    server.daemon_threads = True
    say(f"listening on http://127.0.0.1:{args.port}/health, running {GOOD}")

    parent = os.getppid()
    start = time.monotonic()

    def pipeline():
        pending = list(SCENARIO)
        while True:
            if os.getppid() != parent:  # whoever started us is gone: do not linger
                server.shutdown()
                return
            if pending and time.monotonic() - start >= pending[0][0]:
                releases.deploy(pending.pop(0)[1])
            releases.running()  # report rollbacks even while nobody asks /health
            time.sleep(0.2)

    threading.Thread(target=pipeline, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
