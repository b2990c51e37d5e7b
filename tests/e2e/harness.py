"""End-to-end harness: the real rollguard binary against a real HTTP target on loopback.

Pieces a test combines:
  Target         an HTTP server on 127.0.0.1 (port 0) whose /health the test steers:
                 healthy, error (503), slow (hangs N seconds), down (listener closed).
  ConfigDir      a main config plus rules.d/*.rules written into a pytest tmp_path.
  RollbackScript an action command with a real side effect: it appends one line per run
                 to a marker file, records its environment, and can heal the target.
  Daemon         one `rollguard run` process; its stderr goes to a file so a failing
                 test can show the daemon's log.

Every wait is bounded (wait_until raises with a description when time runs out), and
every process and server a test starts is stopped by the fixtures in conftest.py.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Grades in order of severity, as the spec names them.
GRADES = ("excellent", "good", "warning", "critical", "failure")


def binary():
    """The rollguard binary under test (ROLLGUARD_BINARY), checked to exist."""
    path = os.environ.get("ROLLGUARD_BINARY")
    if not path:
        raise RuntimeError("set ROLLGUARD_BINARY to the built rollguard binary")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"ROLLGUARD_BINARY={path} is not an executable file")
    return path


def source_dir():
    """The repository root: ROLLGUARD_SOURCE_DIR, or two folders up from this file."""
    return Path(os.environ.get("ROLLGUARD_SOURCE_DIR") or Path(__file__).resolve().parents[2])


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a truthy value, which is returned.

    Raises WaitTimeout naming `what` after `timeout` seconds, so no wait is unbounded.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# The HTTP target


class Target:
    """A steerable HTTP service on loopback.

    GET /health answers according to `mode`:
      healthy  200 {"status": "ok", "errors": 0.001}
      error    503 {"status": "error", "errors": 0.5}
      slow     waits `slow_seconds`, then answers as healthy (a probe times out)
      down     the listening socket is closed: connections are refused
    GET or POST /rollback switches the mode to healthy (what a real rollback achieves).
    Every request to /health is recorded with its wall-clock time.
    """

    HEALTHY_BODY = json.dumps({"status": "ok", "errors": 0.001}).encode()
    ERROR_BODY = json.dumps({"status": "error", "errors": 0.5}).encode()

    def __init__(self):
        self.mode = "healthy"
        self.slow_seconds = 0.0
        self.requests = []  # wall-clock times of /health requests
        self.rollbacks = 0
        self._lock = threading.Lock()
        self._released = threading.Event()  # wakes slow handlers on stop / mode change
        self._server = None
        self._thread = None
        self.port = None
        self._listen()

    # -- lifecycle

    def _listen(self):
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output readable
                pass

            def do_GET(self):
                target._handle(self)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                target._handle(self)

        server = ThreadingHTTPServer((LOOPBACK, self.port or 0), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"target:{self.port}")
        self._thread.start()

    def _close_listener(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def stop(self):
        self._released.set()
        self._close_listener()

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}/health"

    # -- steering

    def set_mode(self, mode, slow_seconds=None):
        assert mode in ("healthy", "error", "slow", "down"), mode
        with self._lock:
            previous = self.mode
            self.mode = mode
            if slow_seconds is not None:
                self.slow_seconds = slow_seconds
            if mode == "slow":
                self._released.clear()
            else:
                self._released.set()
        if mode == "down" and previous != "down":
            self._close_listener()
            assert_refused(self.port)
        elif mode != "down" and previous == "down":
            self._listen()

    def request_count(self):
        with self._lock:
            return len(self.requests)

    def requests_since(self, wall_time):
        with self._lock:
            return [t for t in self.requests if t >= wall_time]

    # -- serving

    def _handle(self, handler):
        path = handler.path.split("?", 1)[0]
        if path == "/rollback":
            with self._lock:
                self.rollbacks += 1
            self.set_mode("healthy")
            self._reply(handler, 200, b'{"rolled_back": true}')
            return
        if path != "/health":
            self._reply(handler, 404, b'{"error": "not found"}')
            return
        with self._lock:
            self.requests.append(time.time())
            mode = self.mode
            slow_seconds = self.slow_seconds
        if mode == "slow":
            self._released.wait(slow_seconds)
            mode = "healthy"
        if mode == "error":
            self._reply(handler, 503, self.ERROR_BODY)
        else:
            self._reply(handler, 200, self.HEALTHY_BODY)

    @staticmethod
    def _reply(handler, status, body):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            # No keep-alive: "down" must refuse the very next probe, not serve it on an
            # idle connection that outlived the listener.
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the prober gave up (timeout): nothing to answer


def assert_refused(port):
    """Asserts nothing listens on 127.0.0.1:port any more."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect((LOOPBACK, port))
        except ConnectionRefusedError:
            return
    raise AssertionError(f"port {port} still accepts connections after the target went down")


# --------------------------------------------------------------------------------------
# Config folders


class ConfigDir:
    """A main config and rule files in `root`, with {placeholders} substituted.

    Placeholders are `{name}` for every key of `values`; everything else (including
    `{{ ... }}` summary templates) is left alone.
    """

    def __init__(self, root, main, rules, values=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.values = dict(values or {})
        self.main = self.write("rollguard.conf", main)
        self.rule_files = {name: self.write(f"rules.d/{name}", text)
                           for name, text in rules.items()}

    def substitute(self, text):
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def write(self, relative, text):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(self.substitute(text)))
        return path

    @property
    def state_dir(self):
        return self.root / "state"

    @property
    def journal(self):
        return self.state_dir / "actions.jsonl"

    def actions(self):
        return read_journal(self.journal)


def dedent(text):
    import textwrap

    return textwrap.dedent(text).lstrip("\n")


def read_journal(path):
    """Every complete line of actions.jsonl as a dict ([] while the file is absent).

    A final line without its newline may be mid-write and is left for the next read.
    """
    try:
        data = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    entries = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise AssertionError(f"{path}:{number}: not a JSON object: {line!r} ({error})")
    return entries


def decided(entries, **match):
    return [e for e in entries if e.get("phase") == "decided" and _matches(e, match)]


def finished(entries, **match):
    return [e for e in entries if e.get("phase") == "finished" and _matches(e, match)]


def _matches(entry, match):
    return all(entry.get(key) == value for key, value in match.items())


# --------------------------------------------------------------------------------------
# The rollback script


ROLLBACK_SCRIPT = r'''
import json, os, sys, time, urllib.request

marker, env_log, heal_url = sys.argv[1], sys.argv[2], sys.argv[3]
# The environment first: a test that saw the marker line may read it at once.
with open(env_log, "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("ROLLGUARD_")},
                       sort_keys=True) + "\n")
with open(marker, "a") as f:
    f.write("%s %s %s\n" % (os.environ.get("ROLLGUARD_RULE"),
                            os.environ.get("ROLLGUARD_GRADE"),
                            os.environ.get("ROLLGUARD_PREVIOUS_GRADE")))
if heal_url != "-" and os.path.exists(heal_url.split("|", 1)[0]):
    # heal_url is "SWITCH_FILE|URL": heal only while the test has the switch file present.
    urllib.request.urlopen(urllib.request.Request(heal_url.split("|", 1)[1], method="POST"),
                           timeout=5).read()
'''


class RollbackScript:
    """A rollback action with observable effects.

    Each run appends "$ROLLGUARD_RULE $ROLLGUARD_GRADE $ROLLGUARD_PREVIOUS_GRADE" to
    `marker` and its ROLLGUARD_* environment as one JSON line to `env_log`. While the
    file `heal_switch` exists, it also POSTs the target's /rollback, making it healthy.
    """

    def __init__(self, root, target=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "rollback.py"
        self.path.write_text(ROLLBACK_SCRIPT.lstrip())
        self.marker = self.root / "rollback.marker"
        self.env_log = self.root / "rollback.env.jsonl"
        self.heal_switch = self.root / "rollback.heals"
        heal = "-"
        if target is not None:
            heal = f"{self.heal_switch}|http://{LOOPBACK}:{target.port}/rollback"
        self.command = f"/usr/bin/python3 {self.path} {self.marker} {self.env_log} {heal}"

    def heals(self, enabled):
        if enabled:
            self.heal_switch.touch()
        elif self.heal_switch.exists():
            self.heal_switch.unlink()

    def runs(self):
        """One (rule, grade, previous_grade) tuple per completed run."""
        try:
            text = self.marker.read_text()
        except FileNotFoundError:
            return []
        return [tuple(line.split(" ")) for line in text.splitlines() if line]

    def environments(self):
        try:
            text = self.env_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line]


# --------------------------------------------------------------------------------------
# The daemon


GRADE_CHANGE = re.compile(r"rule (?P<rule>[a-z][a-z0-9_]*): (?P<old>[a-z_]+) -> (?P<new>[a-z_]+)")


class Daemon:
    """One `rollguard run` process with its stderr in a log file."""

    def __init__(self, config, extra_args=(), log_name=None):
        self.config = config
        self.extra_args = list(extra_args)
        self.log_path = Path(config.root) / (log_name or "rollguard.log")
        self.process = None
        self.started_at = None

    def start(self):
        assert self.process is None, "already started"
        self._log_file = open(self.log_path, "ab")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [binary(), "run", "--config", str(self.config.main), *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=_daemon_env(), cwd=self.config.root, start_new_session=True)
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def assert_running(self):
        if not self.running():
            raise AssertionError(
                f"rollguard exited early with {self.process.returncode}:\n{self.log()}")

    def stop(self, timeout=10):
        """SIGTERM; asserts a clean exit (status 0) within `timeout` seconds."""
        self.assert_running()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"rollguard did not stop within {timeout}s of SIGTERM")
        self._close()
        assert code == 0, f"rollguard exited with {code} after SIGTERM, expected 0"
        return code

    def kill(self):
        """SIGKILL (a crash): no chance to flush or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close()

    def _close(self):
        if getattr(self, "_log_file", None):
            self._log_file.close()
            self._log_file = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def grade_changes(self, rule=None):
        """(rule, old, new) for every grade change line in the log, in order."""
        changes = [(m["rule"], m["old"], m["new"]) for m in GRADE_CHANGE.finditer(self.log())]
        return [c for c in changes if rule is None or c[0] == rule]

    def wait_grade(self, rule, grade, timeout, after=0):
        """Waits until the log shows `rule` changing to `grade` more than `after` times."""
        def reached():
            self.assert_running()
            return len([c for c in self.grade_changes(rule) if c[2] == grade]) > after
        return wait_until(reached, timeout, f"rule {rule} to change to {grade} (log line "
                                            f"'rule {rule}: X -> {grade}' #{after + 1})")

    def count_grade(self, rule, grade):
        return len([c for c in self.grade_changes(rule) if c[2] == grade])


def _daemon_env():
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)  # log to stderr (our file), never to journald
    env.pop("NOTIFY_SOCKET", None)
    return env


def run_cli(*args, timeout=30, cwd="/"):
    """Runs `rollguard ARGS...` to completion; returns the CompletedProcess (text).

    The working directory defaults to / so relative paths in configs must resolve
    against the config's folder, as the spec says, not against wherever we happen to be.
    """
    return subprocess.run([binary(), *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout, env=_daemon_env(), stdin=subprocess.DEVNULL, cwd=cwd)
