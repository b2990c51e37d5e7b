"""HTTP endpoints of the real daemon: /metrics, /healthz, /api/v1/status (spec §7).

The daemon listens on 127.0.0.1 port 0 and the test reads the bound port from its log.
promtool (Debian's `prometheus` package) checks the exposition, and a real Prometheus
started here scrapes the daemon and answers a query about it.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import harness
from harness import LOOPBACK, wait_until

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = {listen}
    state_dir = state
    socket    = rollguard.sock
"""

# expect_status admits 5xx: a 503 is up with status 503 (critical), not a failure.
API_RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 200ms
    timeout       = 150ms
    expect_status = 200-599
    labels        = team=payments

    [rule api]
    failure     = not api for 1s
    critical    = api.status >= 500
    on_critical = rollback
    labels      = service=api

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""

WAIT = 15  # seconds: bound for what should take a few probe intervals

SERVING = re.compile(r"serving /metrics, /healthz, /api/v1/status on http://127\.0\.0\.1:(\d+)")


def bound_port(daemon):
    """The port the daemon reports it listens on (it was asked for port 0)."""
    def found():
        daemon.assert_running()
        match = SERVING.search(daemon.log())
        return int(match.group(1)) if match else None
    return wait_until(found, WAIT, "the daemon to log the address it serves on")


def get(port, path, method="GET"):
    """(status, headers, body text) of one request to the daemon."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def canonical(series):
    """'name{b="2",a="1"}' -> 'name{a="1",b="2"}': label order carries no meaning."""
    name, _, labels = series.partition("{")
    pairs = sorted(LABEL.findall(labels))
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else "")


class Samples(dict):
    """{series: value}; lookups accept the labels in any order."""

    def __getitem__(self, series):
        return dict.__getitem__(self, canonical(series))

    def get(self, series, default=None):
        return dict.get(self, canonical(series), default)


def samples(text):
    """Samples for every sample line of an exposition."""
    values = Samples()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        values[canonical(match.group(1) + (match.group(2) or ""))] = float(match.group(3))
    return values


def scrape(port):
    status, headers, body = get(port, "/metrics")
    assert status == 200
    return samples(body)


def wait_metric(port, series, predicate, what):
    def check():
        value = scrape(port).get(series)
        return value is not None and predicate(value)
    return wait_until(check, WAIT, f"{series} {what}", interval=0.1)


@pytest.fixture
def config(make_config):
    return make_config(MAIN, {"api.rules": API_RULES}, listen="127.0.0.1:0")


def test_metrics_follow_the_target_and_pass_promtool(config, daemons, target, rollback):
    daemon = daemons(config)
    port = bound_port(daemon)

    success = 'rollguard_probe_success{probe="api",type="http"}'
    grade = 'rollguard_rule_grade{rule="api"}'
    wait_metric(port, success, lambda v: v == 1, "== 1")
    wait_metric(port, 'rollguard_rule_stale{rule="api"}', lambda v: v == 0, "== 0")
    # A run may time out on a loaded machine (up 0, no fields): wait for an answered one.
    wait_metric(port, 'rollguard_probe_value{probe="api",field="status"}', lambda v: v == 200,
                "== 200")
    values = scrape(port)
    assert values[grade] == 0
    assert values['rollguard_rule_grade_info{rule="api",grade="excellent"}'] == 1
    assert values['rollguard_rule_grade_info{rule="api",grade="critical"}'] == 0
    assert values['rollguard_probe_value{probe="api",field="json.errors"}'] == pytest.approx(0.001)
    assert values['rollguard_probe_duration_seconds_count{probe="api",type="http"}'] >= 1
    assert values['rollguard_config_last_reload_success'] == 1
    assert abs(values['rollguard_config_last_reload_timestamp_seconds'] - time.time()) < 60
    assert values['rollguard_build_info{version="0.1.0"}'] == 1
    assert values['rollguard_breaker_open{breaker="default"}'] == 0
    assert values['rollguard_actions_total{action="rollback",result="ok"}'] == 0

    target.set_mode("error")
    wait_metric(port, grade, lambda v: v == 3, "== 3 (critical)")
    wait_metric(port, 'rollguard_actions_total{action="rollback",result="ok"}', lambda v: v == 1,
                "== 1 after the rollback ran")
    wait_metric(port, 'rollguard_probe_value{probe="api",field="status"}', lambda v: v == 503,
                "== 503")
    values = scrape(port)
    assert values['rollguard_rule_grade_info{rule="api",grade="critical"}'] == 1
    assert values['rollguard_rule_grade_info{rule="api",grade="excellent"}'] == 0
    assert values['rollguard_detection_to_action_seconds_count'] == 1
    assert values['rollguard_breaker_admitted{breaker="default"}'] == 1
    assert not any('result="executed"' in series for series in values)
    assert len(rollback.runs()) == 1

    # Down: success 0, and failure after `for 1s`.
    target.set_mode("down")
    wait_metric(port, success, lambda v: v == 0, "== 0 once the target refuses")
    wait_metric(port, grade, lambda v: v == 4, "== 4 (failure)")
    # A refused connection has no status: the last 503 does not linger as if current.
    assert scrape(port).get('rollguard_probe_value{probe="api",field="status"}') is None

    # The whole exposition passes promtool's parser and linter.
    _, _, text = get(port, "/metrics")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/install-deps installs Debian's prometheus")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}\n{text}"


def test_endpoints_status_health_and_refusals(config, daemons, target):
    daemon = daemons(config)
    port = bound_port(daemon)

    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")

    status, _, body = get(port, "/healthz")
    assert (status, body) == (200, "ok\n")

    def document():
        status, headers, body = get(port, "/api/v1/status")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        return json.loads(body)

    def probe_reported():
        doc = document()
        return doc if doc["probes"] and doc["probes"][0]["fields"].get("status") == 200 else None

    doc = wait_until(probe_reported, WAIT, "the status API to show the probe's first report")
    assert doc["config"]["path"] == str(config.main)
    assert doc["config"]["last_reload_ok"] is True
    assert doc["paused_until"] is None
    probe = doc["probes"][0]
    assert probe["name"] == "api" and probe["type"] == "http"
    assert probe["labels"] == {"team": "payments"}
    assert probe["fields"]["status"] == 200
    assert probe["error"] is None
    assert probe["reported_at"].endswith("Z")
    rule = doc["rules"][0]
    assert rule["name"] == "api"
    assert rule["labels"] == {"service": "api"}
    assert rule["probes"] == ["api"]
    assert doc["breakers"][0]["name"] == "default"
    assert doc["breakers"][0]["state"] == "closed"
    assert doc["last_actions"] == []

    target.set_mode("error")

    def acted():
        # The rollback finished, and the last probe run was answered (not timed out).
        doc = document()
        actions = doc["last_actions"]
        answered = doc["probes"][0]["fields"].get("status") == 503
        return doc if actions and actions[0]["result"] == "ok" and answered else None

    doc = wait_until(acted, WAIT, "the status API to show the finished rollback")
    rule = doc["rules"][0]
    assert rule["grade"] == "critical"
    assert rule["stale"] is False
    assert "api.status" in rule["reason"]
    assert rule["since"].endswith("Z")
    action = doc["last_actions"][0]
    assert action["rule"] == "api" and action["action"] == "rollback"
    assert action["decision"] == "executed"
    assert action["grade"] == "critical"
    assert action["exit_code"] == 0
    assert doc["breakers"][0]["admitted_in_window"] == 1
    assert doc["probes"][0]["fields"]["status"] == 503

    target.set_mode("down")

    def probe_down():
        probe = document()["probes"][0]
        return probe if probe["up"] is False else None

    probe = wait_until(probe_down, WAIT, "the status API to show the probe down")
    assert probe["error"]
    assert "status" not in probe["fields"]

    # Nothing but GET on the three paths.
    assert get(port, "/")[0] == 404
    assert get(port, "/api/v1/pause", method="POST")[0] == 404
    status, headers, _ = get(port, "/api/v1/status", method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert get(port, "/metrics", method="PUT")[0] == 405
    daemon.stop()


# StatusBoard::kWantedFor (60 s) after the last request, plus the sweep that releases it.
STATUS_RELEASED_AFTER = 63


def test_status_is_published_on_demand_and_again_after_a_release(config, daemons, target,
                                                                 rollback):
    """No status document is kept while nobody reads it: the first requests wait for a whole,
    current one; a minute after the last request it is released, and the next request gets
    a whole, current one again."""
    daemon = daemons(config)
    port = bound_port(daemon)
    # Readiness through /metrics: a status request would make the document wanted.
    wait_metric(port, 'rollguard_probe_duration_seconds_count{probe="api",type="http"}',
                lambda v: v >= 1, ">= 1")

    def complete(body):
        doc = json.loads(body)
        assert doc["config"]["path"] == str(config.main)
        assert [probe["name"] for probe in doc["probes"]] == ["api"]
        assert doc["probes"][0]["reported_at"] is not None  # reported before the request
        assert [rule["name"] for rule in doc["rules"]] == ["api"]
        assert doc["breakers"][0]["name"] == "default"
        return doc

    # Concurrent first requests: none of them sees a placeholder.
    with ThreadPoolExecutor(3) as pool:
        first = list(pool.map(lambda _: get(port, "/api/v1/status"), range(3)))
    for status, headers, body in first:
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        assert complete(body)["last_actions"] == []
    asked = time.monotonic()

    # Nobody asks for over a minute; meanwhile the target fails and the rollback runs.
    target.set_mode("error")
    wait_metric(port, 'rollguard_actions_total{action="rollback",result="ok"}', lambda v: v == 1,
                "== 1 after the rollback ran")
    time.sleep(max(0.0, asked + STATUS_RELEASED_AFTER - time.monotonic()))

    # The document was released: this request waits for a new one, rendered from what the
    # daemon tracked meanwhile.
    status, _, body = get(port, "/api/v1/status")
    assert status == 200, body
    doc = complete(body)
    assert doc["rules"][0]["grade"] == "critical"
    assert doc["last_actions"][0]["action"] == "rollback"
    assert doc["last_actions"][0]["result"] == "ok"
    # And the next requests are served from the current publication.
    status, _, body = get(port, "/api/v1/status")
    assert status == 200 and complete(body)["rules"][0]["grade"] == "critical"
    daemon.stop()

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: rollguard
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def prometheus(tmp_path):
    """start(rollguard_port) -> base URL of a real Prometheus scraping it every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: scripts/install-deps installs Debian's prometheus")
    processes = []

    def start(rollguard_port):
        folder = tmp_path / "prometheus"
        folder.mkdir()
        (folder / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(port=rollguard_port))
        log = open(folder / "prometheus.log", "wb")
        for _ in range(3):  # another process may take the free port before Prometheus does
            port = free_port()
            process = subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
            processes.append(process)
            url = f"http://{LOOPBACK}:{port}"

            def ready():
                if process.poll() is not None:
                    return "exited"
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
                        return "ready" if response.status == 200 else None
                except (OSError, urllib.error.URLError):
                    return None

            state = wait_until(ready, 60, "Prometheus to answer /-/ready", interval=0.2)
            if state == "ready":
                return url
        pytest.fail("Prometheus did not start:\n" + (folder / "prometheus.log").read_text())

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def query(url, promql):
    """The result vector of an instant query."""
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
                                timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_a_real_prometheus_scrapes_the_rule_grade(config, daemons, target, prometheus):
    daemon = daemons(config)
    port = bound_port(daemon)
    url = prometheus(port)

    def grade_is(value):
        def check():
            daemon.assert_running()
            result = query(url, 'rollguard_rule_grade{rule="api"}')
            return result if result and result[0]["value"][1] == value else None
        return check

    result = wait_until(grade_is("0"), 30, "Prometheus to see rule api excellent (0)",
                        interval=0.3)
    assert result[0]["metric"]["job"] == "rollguard"
    target.set_mode("error")
    wait_until(grade_is("3"), 30, "Prometheus to see rule api critical (3)", interval=0.3)
    up = query(url, 'up{job="rollguard"}')
    assert up[0]["value"][1] == "1"
    info = query(url, 'rollguard_rule_grade_info{rule="api"} == 1')
    assert [r["metric"]["grade"] for r in info] == ["critical"]


def listening_ports(pid):
    """TCP ports the process `pid` has a listening socket on (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_listen_off_listens_nowhere(make_config, daemons, target):
    config = make_config(MAIN, {"api.rules": API_RULES}, listen="off")
    daemon = daemons(config)
    wait_until(lambda: "HTTP endpoints disabled" in daemon.log(), WAIT,
               "the daemon to say the HTTP endpoints are disabled")
    wait_until(lambda: daemon.grade_changes("api") or target.request_count() > 2, WAIT,
               "the daemon to probe the target")
    daemon.assert_running()
    assert listening_ports(daemon.process.pid) == set()
    assert "serving /metrics" not in daemon.log()


def test_listen_on_a_fixed_port_is_the_only_listener(make_config, daemons, target):
    port = free_port()
    config = make_config(MAIN, {"api.rules": API_RULES}, listen=f"127.0.0.1:{port}")
    daemon = daemons(config)
    assert bound_port(daemon) == port
    assert listening_ports(daemon.process.pid) == {port}
    assert get(port, "/healthz")[0] == 200


def test_a_port_in_use_stops_the_start_with_the_address(make_config, daemons, target):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = make_config(MAIN, {"api.rules": API_RULES}, listen=f"127.0.0.1:{port}")
        daemon = daemons(config)
        code = daemon.process.wait(timeout=WAIT)
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.log()


def test_a_listen_value_that_is_not_an_address_is_named(make_config, daemons, target):
    config = make_config(MAIN, {"api.rules": API_RULES}, listen="localhost:9847")
    daemon = daemons(config)
    code = daemon.process.wait(timeout=WAIT)
    assert code == 1
    log = daemon.log()
    assert "[daemon] listen" in log and "localhost:9847" in log and "expected" in log


def test_credentials_in_a_probe_url_appear_in_no_endpoint(make_config, daemons, target):
    rules = API_RULES.replace("{url}", f"http://watcher:hunter2@{LOOPBACK}:{target.port}/health")
    config = make_config(MAIN, {"api.rules": rules}, listen="127.0.0.1:0")
    daemon = daemons(config)
    port = bound_port(daemon)
    wait_metric(port, 'rollguard_probe_success{probe="api",type="http"}', lambda v: v == 1,
                "== 1 (the probe authenticated and reported)")
    target.set_mode("down")
    wait_metric(port, 'rollguard_probe_success{probe="api",type="http"}', lambda v: v == 0,
                "== 0 (the probe's error text is now shown)")
    for path in ("/metrics", "/api/v1/status"):
        status, _, body = get(port, path)
        assert status == 200
        assert "hunter2" not in body, f"{path} shows the probe's password"
    assert "hunter2" not in daemon.log()
