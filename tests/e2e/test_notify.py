"""Notifications end to end (spec §9): the real daemon posts to real HTTP receivers on
loopback and to a real Alertmanager.

- Slack: every event kind arrives as Block Kit blocks with fallback text and a colour.
- A receiver that is down or answers after 10 s delays neither probes nor the rollback.
- webhook: Alertmanager's version 4 document, firing then resolved.
- alertmanager: a real `prometheus-alertmanager` shows rollguard's alert firing, then
  resolved.

Timing: probes every 200ms; the breaker admits one action per 4s window and cools down
for 2s, so an open breaker closes again within seconds.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import LOOPBACK, decided, wait_until

WAIT = 15
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = rollguard.sock

    [breaker]
    max_actions = 1
    window      = 4s
    cooldown    = 2s

{notifiers}
"""

RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 200ms
    timeout       = 150ms
    expect_status = 200-599

    [rule api]
    critical    = api.status >= 500
    on_critical = rollback
    summary     = API answers {{ api.status }}
    labels      = team=payments service=api
    {notify_line}

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""


class Receiver:
    """An HTTP server on loopback that records every POST (time, path, JSON body).

    mode: "ok" answers 200; "slow" waits `delay` seconds first; "fail" answers 500.
    """

    def __init__(self, mode="ok", delay=0.0):
        self.mode = mode
        self.delay = delay
        self.posts = []
        self.attempts = []  # wall-clock times of every request, answered or not
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.attempts.append(time.time())
                if receiver.mode == "slow":
                    receiver._stop.wait(receiver.delay)
                status = 500 if receiver.mode == "fail" else 200
                if status == 200:
                    with receiver._lock:
                        receiver.posts.append({"time": time.time(), "path": self.path,
                                               "headers": dict(self.headers),
                                               "body": json.loads(body)})
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        # rollguard hanging up on a slow answer (its timeout, or SIGTERM) is expected.
        self.server.handle_error = lambda request, address: None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}/hook"

    def bodies(self):
        with self._lock:
            return [p["body"] for p in self.posts]

    def stop(self):
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started = []

    def make(*args, **kwargs):
        receiver = Receiver(*args, **kwargs)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def slack_section(name, url, extra=""):
    return f"""
    [notifier {name}]
    type = slack
    url  = {url}
    {extra}
"""


def titles(receiver):
    return [b["text"] for b in receiver.bodies()]


def find(receiver, text):
    """The first Slack payload whose fallback text contains `text`."""
    for body in receiver.bodies():
        if text in body["text"]:
            return body
    return None


def wait_for_message(receiver, text, timeout=WAIT):
    return wait_until(lambda: find(receiver, text), timeout,
                      f"a message containing {text!r}; got {titles(receiver)}")


def block_text(body):
    """All mrkdwn/plain text of the attachment's blocks, joined."""
    parts = []
    for block in body["attachments"][0]["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        for field in block.get("fields", []):
            parts.append(field["text"])
        for element in block.get("elements", []):
            parts.append(element["text"])
    return "\n".join(parts)


def check_slack_shape(body, color):
    assert isinstance(body["text"], str) and body["text"], body
    assert len(body["attachments"]) == 1, body
    attachment = body["attachments"][0]
    assert attachment["color"] == color, (body["text"], attachment["color"], color)
    blocks = attachment["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text", blocks
    assert blocks[0]["text"]["text"] == body["text"].replace("&gt;", ">").replace("&lt;", "<") \
        .replace("&amp;", "&"), blocks[0]
    assert blocks[-1]["type"] == "context", blocks
    assert all(b["type"] in ("header", "section", "context") for b in blocks), blocks


def test_slack_gets_every_event_kind(make_config, target, rollback, daemons, receivers):
    slack = receivers()
    other = receivers()  # min_grade failure and not in the rule's notify list
    notifiers = (slack_section("slack", slack.url, "repeat = 3s")
                 + slack_section("other", other.url, "min_grade = failure"))
    secret = "SECRET-TOKEN-xyz"
    config = make_config(MAIN.replace("{notifiers}", notifiers), {"api.rules": RULES},
                         notify_line="notify = slack")
    # The Slack URL is a secret: give it a path that must never show up anywhere.
    config.write("rollguard.conf", MAIN.replace("{notifiers}", notifiers).replace(
        f"url  = {slack.url}", f"webhook_url_file = slack.url"))
    (config.root / "slack.url").write_text(f"{slack.url}/{secret}\n")
    rollback.heals(True)
    daemon = daemons(config)
    wait_until(lambda: len(target.requests_since(daemon.started_at)) >= 3, WAIT, "first probes")

    # Incident 1: critical, the rollback runs (and heals), the breaker opens (1 per window).
    target.set_mode("error")
    change = wait_for_message(slack, "api: excellent → critical")
    check_slack_shape(change, "#e01e5a")
    text = block_text(change)
    assert "*Summary*\nAPI answers 503" in text, text
    assert "*Values*\napi.status &gt;= 500" in text, text
    assert "*What rollguard did*\nrollback: running" in text, text
    assert "*Rule*\napi" in text and "*Grade*\nexcellent → critical" in text, text
    assert "team=payments" in text and "service=api" in text, text
    assert slack.posts[0]["path"] == f"/hook/{secret}"

    finished = wait_for_message(slack, "api: rollback: ok")
    check_slack_shape(finished, "#2eb886")
    opened = wait_for_message(slack, "breaker default open until")
    check_slack_shape(opened, "#e01e5a")
    resolved = wait_for_message(slack, "api resolved: critical → excellent")
    check_slack_shape(resolved, "#2eb886")

    # Incident 2 while the breaker is open: the decision is suppressed, and told to EVERY
    # notifier, "other" included (spec §5), though it hears no grade changes.
    rollback.heals(False)
    target.set_mode("error")
    wait_until(lambda: any(e["decision"] == "suppressed_breaker" for e in decided(config.actions())),
               WAIT, "a suppressed_breaker decision")
    second = wait_until(lambda: [b for b in slack.bodies()
                                 if b["text"] == "api: excellent → critical"][1:], WAIT,
                        "the second grade change")[0]
    assert "rollback: suppressed_breaker (breaker open until" in block_text(second), block_text(second)
    suppressed = wait_for_message(other, "api: rollback suppressed: breaker open until")
    check_slack_shape(suppressed, "#daa038")
    assert wait_for_message(other, "breaker default open until")

    # A reminder while it stays critical (repeat = 3s), then the breaker closes.
    reminder = wait_for_message(slack, "api is still critical (since")
    check_slack_shape(reminder, "#e01e5a")
    closed = wait_for_message(slack, "breaker default closed")
    check_slack_shape(closed, "#2eb886")

    # A broken reload is told to every notifier; the fix is told too.
    good_rules = config.rule_files["api.rules"].read_text()
    config.rule_files["api.rules"].write_text(good_rules.replace("api.status >= 500", "api.status >="))
    daemon.process.send_signal(signal.SIGHUP)
    failed = wait_for_message(other, "config reload rejected")
    check_slack_shape(failed, "#e01e5a")
    assert "api.rules:" in block_text(failed), block_text(failed)
    config.rule_files["api.rules"].write_text(good_rules)
    daemon.process.send_signal(signal.SIGHUP)
    recovered = wait_for_message(slack, "config reloaded")
    check_slack_shape(recovered, "#2eb886")

    target.set_mode("healthy")
    wait_until(lambda: [b for b in slack.bodies() if "api resolved" in b["text"]][1:], WAIT,
               "the second resolution")
    # "other" (min_grade failure, not in notify) never heard a grade change.
    assert not [t for t in titles(other) if "→" in t], titles(other)
    daemon.stop()
    assert secret not in daemon.log(), "the Slack URL leaked into the log"
    for receiver in (slack, other):
        for body in receiver.bodies():
            assert secret not in json.dumps(body)


def test_down_or_slow_receivers_delay_nothing(make_config, target, rollback, daemons, receivers):
    slow = receivers("slow", delay=10)
    down = f"http://{LOOPBACK}:{free_port()}/hook"  # nothing listens there
    notifiers = (slack_section("slow", slow.url, "timeout = 15s")
                 + slack_section("down", down))
    config = make_config(MAIN.replace("{notifiers}", notifiers), {"api.rules": RULES},
                         notify_line="")
    rules = config.rule_files["api.rules"].read_text()
    daemon = daemons(config)
    wait_until(lambda: len(target.requests_since(daemon.started_at)) >= 3, WAIT, "first probes")

    # Messages are queued at both receivers before the incident: the slow one holds its
    # connection for 10 s, the other refuses and is retried with backoff.
    config.rule_files["api.rules"].write_text(rules.replace("api.status >= 500", "api.status >="))
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: slow.attempts, WAIT, "the slow receiver to be asked")
    config.rule_files["api.rules"].write_text(rules)
    daemon.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    broke_at = time.time()
    target.set_mode("error")
    wait_until(rollback.runs, WAIT, "the rollback")
    ran = decided(config.actions())[0]
    reaction = ran["ts_ms"] / 1000 - broke_at
    print(f"rollback decided {reaction:.3f}s after the target broke")
    assert reaction < 2.0, f"rollback took {reaction:.2f}s with a slow and a down receiver"

    # Probes kept their 200ms cadence while the slow receiver held its request. The bounds
    # leave room for a loaded CI machine; a loop blocked by a receiver would show seconds.
    window_start = time.time()
    time.sleep(3)
    times = target.requests_since(window_start - 0.01)
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"probe gaps while notifying: max {max(gaps):.3f}s over {len(gaps)} gaps")
    assert len(times) >= 12, f"only {len(times)} probes in 3 s at a 200ms interval"
    assert max(gaps) < 0.6, f"a probe gap of {max(gaps):.2f}s while a receiver was slow"
    assert not slow.posts, "the slow receiver should still be holding its first request"
    daemon.stop()


def test_webhook_sends_alertmanager_version_4(make_config, target, rollback, daemons, receivers):
    hook = receivers()
    notifiers = f"""
    [notifier pager]
    type         = webhook
    url          = {hook.url}
    min_grade    = critical
    external_url = http://rollguard.example:9847
"""
    metrics_port = free_port()
    config = make_config(MAIN.replace("{notifiers}", notifiers).replace(
        "listen    = off", f"listen    = {LOOPBACK}:{metrics_port}"), {"api.rules": RULES},
        notify_line="notify = pager")
    rollback.heals(True)
    daemon = daemons(config)
    wait_until(lambda: len(target.requests_since(daemon.started_at)) >= 3, WAIT, "first probes")
    target.set_mode("error")

    def grade_docs():
        return [b for b in hook.bodies() if b["groupLabels"].get("alertname") == "api"]

    firing = wait_until(grade_docs, WAIT, "the firing document")[0]
    assert firing["version"] == "4"
    assert firing["status"] == "firing"
    assert firing["receiver"] == "pager"
    assert firing["externalURL"] == "http://rollguard.example:9847"
    assert firing["truncatedAlerts"] == 0
    assert firing["groupKey"] == '{}:{alertname="api", rule="api"}'
    assert firing["groupLabels"] == {"alertname": "api", "rule": "api"}
    alert = firing["alerts"][-1]
    labels = alert["labels"]
    assert labels["alertname"] == "api" and labels["rule"] == "api"
    assert labels["grade"] == "critical" and labels["severity"] == "critical"
    assert labels["team"] == "payments" and labels["service"] == "api"
    assert firing["commonLabels"]["grade"] == "critical"
    assert alert["status"] == "firing"
    assert alert["annotations"]["summary"] == "API answers 503"
    assert "Values: api.status >= 500" in alert["annotations"]["description"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"].endswith("Z")
    assert len(alert["fingerprint"]) == 16

    resolved = wait_until(lambda: [d for d in grade_docs() if d["status"] == "resolved"], WAIT,
                          "the resolved document")[0]
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] >= alert["startsAt"]
    # The action and breaker were told as alerts of their own.
    def names():
        return {b["groupLabels"].get("alertname") for b in hook.bodies()}
    wait_until(lambda: {"RollguardAction", "RollguardBreakerOpen"} <= names(), WAIT,
               "the action and breaker alerts")
    action = [b for b in hook.bodies() if b["groupLabels"].get("alertname") == "RollguardAction"][0]
    assert action["alerts"][0]["labels"]["result"] == "ok", action

    # Every delivery is counted in rollguard_notifications_total{notifier,result}.
    def sent_count():
        with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('rollguard_notifications_total{notifier="pager",result="sent"}'):
                    return float(line.split()[-1])
        return 0
    wait_until(lambda: sent_count() >= len(hook.bodies()), WAIT,
               f"rollguard_notifications_total to count {len(hook.bodies())} sent")
    daemon.stop()


@pytest.fixture
def alertmanager(tmp_path):
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.skip(f"{ALERTMANAGER} missing: install the Debian package prometheus-alertmanager "
                    "(scripts/install-deps)")
    folder = tmp_path / "alertmanager"
    folder.mkdir()
    (folder / "alertmanager.yml").write_text(
        'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    log = open(folder / "log", "wb")
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={folder / 'alertmanager.yml'}",
         f"--storage.path={folder / 'data'}", f"--web.listen-address={LOOPBACK}:{port}",
         "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://{LOOPBACK}:{port}"

    def ready():
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited: {(folder / 'log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, "alertmanager to be ready")
        yield base
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def api_alerts(base):
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as answer:
        return json.load(answer)


def test_alertmanager_shows_the_alert_firing_then_resolved(make_config, target, rollback,
                                                           daemons, alertmanager):
    notifiers = f"""
    [notifier am]
    type   = alertmanager
    url    = {alertmanager}
    resend = 1s
"""
    config = make_config(MAIN.replace("{notifiers}", notifiers), {"api.rules": RULES},
                         notify_line="notify = am")
    daemon = daemons(config)
    wait_until(lambda: len(target.requests_since(daemon.started_at)) >= 3, WAIT, "first probes")
    target.set_mode("error")

    def firing():
        return [a for a in api_alerts(alertmanager)
                if a["labels"].get("alertname") == "api" and a["status"]["state"] == "active"]

    alert = wait_until(firing, WAIT, "the api alert active in Alertmanager")[0]
    assert alert["labels"]["grade"] == "critical"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["team"] == "payments"
    assert alert["annotations"]["summary"] == "API answers 503"
    assert alert["endsAt"] > alert["startsAt"], "a firing alert must end in the future"
    # While it fires it is re-sent every `resend`, each time ending 4 x resend later.
    first_end = alert["endsAt"]
    wait_until(lambda: firing() and firing()[0]["endsAt"] > first_end, WAIT,
               f"the alert to be re-sent with a later endsAt than {first_end}")

    # The rollback does not heal here; the test heals the target: resolved at once.
    target.set_mode("healthy")
    wait_until(lambda: not firing(), WAIT, "the api alert to be resolved in Alertmanager")
    daemon.stop()


def test_slack_hears_that_a_rollback_did_not_help(make_config, target, rollback, daemons,
                                                  receivers):
    slack = receivers()
    config = make_config(MAIN.replace("{notifiers}", slack_section("slack", slack.url)),
                         {"api.rules": RULES.replace("    cooldown = 0s\n",
                                                     "    cooldown = 0s\n    verify   = 1s\n")},
                         notify_line="")
    assert "verify   = 1s" in config.rule_files["api.rules"].read_text()
    daemon = daemons(config)
    wait_until(lambda: len(target.requests_since(daemon.started_at)) >= 3, WAIT, "first probes")
    target.set_mode("error")  # the rollback does not heal: still critical after 1s
    message = wait_for_message(slack, "api: rollback did not help, still critical")
    check_slack_shape(message, "#8b0000")
    assert "*Error*\nrollback finished at" in block_text(message), block_text(message)
    assert "1s later api is still critical" in block_text(message), block_text(message)
    daemon.stop()
