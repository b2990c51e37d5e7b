"""Action types and action policy end to end: the real daemon runs exec (also as another
user), http (against a recording HTTP server this test runs on loopback) and systemd
actions (with no system bus: a clear failure, never a hang); verify + escalate; deploy
windows (`arm` + `rollguard deployed`); per-action dry run; `depends`; and two rules
entering critical at the same instant with one breaker between them.

Timing: probes every 200ms; action cooldowns 0s so only the policy under test refuses.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import LOOPBACK, decided, finished, run_cli, wait_until

WAIT = 10

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = {socket}

    [breaker]
    max_actions = {max_actions}
    window      = 1h
    cooldown    = 1h
"""

PROBE = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 200ms
    timeout       = 150ms
    expect_status = 200-599
"""


class Recorder:
    """An HTTP endpoint on 127.0.0.1 (port 0) that records every request it gets and
    answers with `status`."""

    def __init__(self):
        self.requests = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers.items()),
                                          "body": body.decode(errors="replace")})
                reply = b'{"ok": true}' if recorder.status < 400 else b"rollback refused: busy"
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply)

            do_POST = _record
            do_PUT = _record

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.stop()


@pytest.fixture
def socket_dir():
    path = Path(tempfile.mkdtemp(prefix="rg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def setup(make_config, socket_dir):
    def make(rules, max_actions=10, **values):
        text = textwrap.dedent(PROBE) + textwrap.dedent(rules).lstrip("\n")
        return make_config(MAIN, {"api.rules": text}, socket=socket_dir / "rg.sock",
                           max_actions=max_actions, **values)
    return make


def start(daemons, config, target, *args):
    daemon = daemons(config, *args)
    since = time.time()
    wait_until(lambda: (daemon.assert_running(), len(target.requests_since(since)) >= 3)[1],
               WAIT, "3 probe requests")
    return daemon


def wait_journal(config, predicate, what, timeout=WAIT):
    """Waits until predicate(journal entries) is truthy; returns the predicate's value when
    it is a list, else the entries."""
    value = wait_until(lambda: predicate(config.actions()), timeout, what)
    return value if isinstance(value, list) else config.actions()


def cli(config, *args):
    return run_cli(*args, "--config", config.main)


# ---------------------------------------------------------------------------------------
# Action types


def test_http_action_posts_the_rendered_body_with_its_headers(setup, target, recorder, daemons):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = notify_deployer
        summary     = api answered {{ api.status }}
        labels      = service=api

        [action notify_deployer]
        type     = http
        url      = http://127.0.0.1:{recorder_port}/rollback?from=rollguard
        header   = Content-Type: application/json
        header   = X-Token: s3cret
        body     = {"rule": {{ rule | json }}, "grade": "{{ grade }}", "summary": {{ summary | json }}, "service": {{ service | json }}, "incident": {{ incident | json }}}
        cooldown = 0s
    """, recorder_port=recorder.port)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    done = wait_journal(config, finished, "the http action to finish")
    assert done[0]["result"] == "ok", done
    assert len(recorder.requests) == 1, recorder.requests
    request = recorder.requests[0]
    assert request["method"] == "POST" and request["path"] == "/rollback?from=rollguard", request
    assert request["headers"].get("Content-Type") == "application/json", request
    assert request["headers"].get("X-Token") == "s3cret", request
    body = json.loads(request["body"])
    executed = decided(config.actions())[0]
    assert body == {"rule": "api", "grade": "critical", "summary": "api answered 503",
                    "service": "api", "incident": executed["incident"]}, body
    daemon.stop()


def test_http_action_with_an_unexpected_status_is_recorded_as_failed(setup, target, recorder,
                                                                     daemons):
    recorder.status = 500
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = hook

        [action hook]
        type          = http
        method        = PUT
        url           = http://127.0.0.1:{recorder_port}/hook
        expect_status = 200-204
        cooldown      = 0s
    """, recorder_port=recorder.port)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    done = wait_journal(config, finished, "the http action to finish")
    assert done[0]["result"] == "failed", done
    assert "HTTP 500" in done[0]["error"] and "200-204" in done[0]["error"], done[0]
    assert "rollback refused: busy" in done[0]["error"], done[0]
    assert recorder.requests[0]["method"] == "PUT"
    daemon.stop()


def test_systemd_action_without_a_system_bus_fails_at_once(setup, target, daemons, monkeypatch):
    # sd-bus honours DBUS_SYSTEM_BUS_ADDRESS: point it at a socket that does not exist.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/rollguard-test-bus")
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = restart_api

        [action restart_api]
        type      = systemd
        unit      = api.service
        operation = restart
        timeout   = 30s
        cooldown  = 0s
    """)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    started = time.monotonic()
    done = wait_journal(config, finished, "the systemd action to finish")
    assert time.monotonic() - started < 5, "a missing bus must fail at once, not hang"
    assert done[0]["result"] == "failed", done
    assert "system D-Bus" in done[0]["error"], done[0]
    assert done[0]["duration_seconds"] < 5, done[0]
    daemon.assert_running()
    daemon.stop()


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>custom</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
"""


@pytest.fixture
def systemd_double(tmp_path, monkeypatch):
    """A private dbus-daemon with systemd_manager_double.py owning org.freedesktop.systemd1
    on it; the daemon's sd-bus reaches it through DBUS_SYSTEM_BUS_ADDRESS. Yields the
    double's call log."""
    if not os.access("/usr/bin/dbus-daemon", os.X_OK):
        pytest.skip("dbus-daemon is not installed")
    socket_path = tmp_path / "bus"
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket_path))
    bus = subprocess.Popen(["/usr/bin/dbus-daemon", f"--config-file={config}", "--nofork",
                            "--nopidfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "manager.log"
    manager = None
    try:
        wait_until(socket_path.exists, 10, "the private dbus-daemon's socket")
        address = f"unix:path={socket_path}"
        manager = subprocess.Popen(
            ["/usr/bin/python3", str(Path(__file__).parent / "systemd_manager_double.py"),
             address, str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: log.exists() and "ready" in log.read_text(), 10,
                   "the systemd Manager double to own its name")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield log
    finally:
        for process in (manager, bus):
            if process is not None:
                process.kill()
                process.wait(timeout=10)


SYSTEMD_ACTION = """
    [rule api]
    critical    = api.status >= 500
    on_critical = restart_api

    [action restart_api]
    type      = systemd
    unit      = {unit}
    operation = restart
    timeout   = {timeout}
    cooldown  = 0s
"""


@pytest.mark.parametrize("unit,result,error", [
    ("ok.service", "ok", None),
    ("broken.service", "failed", 'the job ended with "failed"'),
    ("missing.service", "failed", "org.freedesktop.systemd1.NoSuchUnit"),
])
def test_systemd_action_waits_for_the_job_like_systemctl(setup, target, daemons, systemd_double,
                                                         unit, result, error):
    config = setup(SYSTEMD_ACTION, unit=unit, timeout="10s")
    daemon = start(daemons, config, target)
    target.set_mode("error")
    done = wait_journal(config, finished, "the systemd action to finish")[0]
    assert done["result"] == result, done
    if error is None:
        assert not done.get("error"), done
        # The job's end is awaited: the double ends it 300ms after accepting it.
        assert done["duration_seconds"] >= 0.25, done
    else:
        assert error in done["error"], done
    assert f"RestartUnit {unit} replace" in systemd_double.read_text()
    daemon.stop()


def test_systemd_action_times_out_when_the_job_never_ends(setup, target, daemons,
                                                          systemd_double):
    config = setup(SYSTEMD_ACTION, unit="hang.service", timeout="1500ms")
    daemon = start(daemons, config, target)
    target.set_mode("error")
    done = wait_journal(config, finished, "the systemd action to time out")[0]
    assert done["result"] == "timeout", done
    assert "had not finished after 1s500ms" in done["error"], done
    assert 1.4 <= done["duration_seconds"] < 5, done
    daemon.assert_running()
    daemon.stop()


@pytest.fixture
def throwaway_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway user and to run an action as it")
    name = "rgact" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_exec_action_runs_as_its_user(setup, target, daemons, throwaway_user):
    out = Path(tempfile.mkdtemp(prefix="rg-out-"))
    try:
        out.chmod(0o777)
        config = setup("""
            [rule api]
            critical    = api.status >= 500
            on_critical = whoami

            [action whoami]
            type     = exec
            shell    = true
            command  = id -un > {out}/who; id -u >> {out}/who; echo "$ROLLGUARD_RULE" >> {out}/who
            user     = {user}
            cooldown = 0s
        """, out=out, user=throwaway_user.pw_name)
        daemon = start(daemons, config, target)
        target.set_mode("error")
        done = wait_journal(config, finished, "the exec action to finish")
        assert done[0]["result"] == "ok", done
        lines = (out / "who").read_text().split()
        assert lines == [throwaway_user.pw_name, str(throwaway_user.pw_uid), "api"], lines
        daemon.stop()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_check_rejects_an_action_user_that_does_not_exist(setup):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = rollback

        [action rollback]
        type    = exec
        command = /bin/true
        user    = no_such_user_rg
    """)
    result = run_cli("check", "--config", config.main)
    assert result.returncode == 1, result
    assert "api.rules:" in result.stderr and "[action rollback] user" in result.stderr, result.stderr
    assert 'no user "no_such_user_rg"' in result.stderr, result.stderr


def test_check_rejects_bad_http_and_systemd_actions_with_file_line(setup):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = hook restart

        [action hook]
        type     = http
        url      = ftp://example
        body     = {{ nope }}
        escalate = restart

        [action restart]
        type      = systemd
        unit      = api.service
        operation = bounce
    """)
    result = run_cli("check", "--config", config.main)
    assert result.returncode == 1, result
    err = result.stderr
    assert "[action hook] url: expected an http:// or https:// URL" in err, err
    assert 'unknown variable "nope"' in err, err
    assert "[action hook] escalate: needs verify" in err, err
    assert "[action restart] operation: expected restart, stop, start or reload" in err, err


# ---------------------------------------------------------------------------------------
# Policy


ESCALATION = """
    [rule api]
    critical    = api.status >= 500
    on_critical = rollback

    [action rollback]
    type     = exec
    command  = {rollback}
    cooldown = 0s
    verify   = 1s
    escalate = page

    [action page]
    type     = exec
    shell    = true
    command  = echo "$ROLLGUARD_ACTION $ROLLGUARD_GRADE" >> {tmp}/page.marker
    cooldown = 0s
"""


def test_verify_escalates_when_the_rollback_did_not_help(setup, target, rollback, daemons,
                                                         tmp_path):
    config = setup(ESCALATION)
    daemon = start(daemons, config, target)
    target.set_mode("error")  # the rollback does not heal: the rule stays critical
    entries = wait_journal(config, lambda e: len(finished(e)) >= 2, "rollback and escalation")
    chosen = [(e["action"], e["decision"]) for e in decided(entries)]
    assert chosen == [("rollback", "executed"), ("page", "executed")], entries
    page = decided(entries)[1]
    assert "rollback did not help" in page["reason"], page
    assert page["incident"] == decided(entries)[0]["incident"], "escalation belongs to the incident"
    gap = page["ts_ms"] - finished(entries)[0]["ts_ms"]
    assert 900 <= gap <= 4000, f"escalated {gap}ms after the rollback finished, verify = 1s"
    assert (tmp_path / "page.marker").read_text() == "page critical\n"
    assert "rollback did not help" in daemon.log()
    daemon.stop()


def test_verify_passes_when_the_rule_recovers(setup, target, rollback, daemons, tmp_path):
    rollback.heals(True)
    config = setup(ESCALATION)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    wait_journal(config, lambda e: len(finished(e)) >= 1, "the rollback to finish")
    time.sleep(2.5)  # well past verify = 1s
    chosen = [(e["action"], e["decision"]) for e in decided(config.actions())]
    assert chosen == [("rollback", "executed")], config.actions()
    assert not (tmp_path / "page.marker").exists()
    assert "rollback did not help" not in daemon.log()
    daemon.stop()


def test_a_pending_verify_survives_kill_9_and_escalates_after_the_restart(
        setup, target, rollback, daemons, tmp_path):
    config = setup(ESCALATION.replace("verify   = 1s", "verify   = 4s"))
    daemon = start(daemons, config, target)
    target.set_mode("error")  # the rollback does not heal: the rule stays critical
    entries = wait_journal(config, lambda e: len(finished(e)) >= 1, "the rollback to finish")
    finished_ms = finished(entries)[0]["ts_ms"]
    time.sleep(1.5)  # the pending verify reaches state.json within a second
    daemon.kill()
    saved = json.loads((config.state_dir / "state.json").read_text())
    assert [v["action"] for v in saved.get("verifies", [])] == ["rollback"], saved
    # Down past the verify's due time (finished + 4s).
    wait_until(lambda: time.time() * 1000 > finished_ms + 4500, 10, "the verify to fall due")

    restarted = daemons(config)
    entries = wait_journal(config, lambda e: len(decided(e)) >= 2, "the escalation after restart")
    chosen = [(e["action"], e["decision"]) for e in decided(entries)]
    assert chosen == [("rollback", "executed"), ("page", "executed")], entries
    page = decided(entries)[1]
    assert "rollback did not help" in page["reason"], page
    assert page["incident"] == decided(entries)[0]["incident"], page
    assert page["ts_ms"] - restarted.started_at * 1000 < 4000, "escalated long after the restart"
    wait_until(lambda: (tmp_path / "page.marker").exists(), WAIT, "the page action to run")
    assert len(rollback.runs()) == 1, "the restart re-ran the rollback"
    restarted.stop()
    saved = json.loads((config.state_dir / "state.json").read_text())
    assert saved.get("verifies") == [], saved


def test_a_pending_verify_passes_after_a_restart_when_the_rule_recovered(
        setup, target, rollback, daemons, tmp_path):
    config = setup(ESCALATION.replace("verify   = 1s", "verify   = 4s"))
    daemon = start(daemons, config, target)
    target.set_mode("error")
    wait_journal(config, lambda e: len(finished(e)) >= 1, "the rollback to finish")
    time.sleep(1.5)
    daemon.stop()
    target.set_mode("healthy")  # recovered while rollguard was down
    restarted = start(daemons, config, target)
    time.sleep(4.5)  # past the verify's due time
    chosen = [(e["action"], e["decision"]) for e in decided(config.actions())]
    assert chosen == [("rollback", "executed")], config.actions()
    assert not (tmp_path / "page.marker").exists()
    assert "verify of rollback for rule api: passed" in restarted.log()
    restarted.stop()


ARMED = """
    [rule api]
    critical    = api.status >= 500
    on_critical = rollback
    labels      = service=api

    [action rollback]
    type     = exec
    command  = {rollback}
    cooldown = 0s
    arm      = 30s
"""


def incident(config, target, daemon, count):
    recoveries = daemon.log().count("-> excellent")
    target.set_mode("error")
    wait_journal(config, lambda e: len(decided(e)) >= count, f"{count} decisions")
    executed = [e for e in decided(config.actions()) if e["decision"] == "executed"]
    wait_journal(config, lambda e: len(finished(e)) >= len(executed), "actions to finish")
    target.set_mode("healthy")
    wait_until(lambda: daemon.log().count("-> excellent") > recoveries, WAIT, "recovery")
    return [e["decision"] for e in decided(config.actions())]


def test_arm_runs_only_within_the_window_after_a_deploy_of_the_rules_service(
        setup, target, rollback, daemons):
    config = setup(ARMED)
    daemon = start(daemons, config, target)
    assert incident(config, target, daemon, 1) == ["suppressed_unarmed"]
    wait_until(lambda: "not armed: no deploy recorded" in daemon.log(), WAIT,
               "the log to say why the action is not armed")

    other = cli(config, "deployed", "--service", "billing", "--version", "7")
    assert other.returncode == 0, other.stderr
    assert incident(config, target, daemon, 2) == ["suppressed_unarmed"] * 2

    ours = cli(config, "deployed", "--service", "api", "--version", "1.2.3")
    assert ours.returncode == 0 and "for api at version 1.2.3" in ours.stdout, ours
    assert incident(config, target, daemon, 3) == ["suppressed_unarmed"] * 2 + ["executed"]
    assert len(rollback.runs()) == 1
    state = json.loads((config.state_dir / "state.json").read_text())
    assert json.dumps(state).count("1.2.3") == 1, state
    daemon.stop()


def test_arm_window_closes(setup, target, rollback, daemons):
    config = setup(ARMED.replace("arm      = 30s", "arm      = 1s"))
    daemon = start(daemons, config, target)
    assert cli(config, "deployed").returncode == 0  # a deploy without a service arms all
    time.sleep(1.5)
    assert incident(config, target, daemon, 1) == ["suppressed_unarmed"]
    assert cli(config, "deployed").returncode == 0
    assert incident(config, target, daemon, 2) == ["suppressed_unarmed", "executed"]
    daemon.stop()


def test_per_action_dry_run_journals_would_have_run(setup, target, rollback, daemons):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = rollback

        [action rollback]
        type     = exec
        command  = {rollback}
        cooldown = 0s
        dry_run  = true
    """)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    entries = wait_journal(config, decided, "a decision")
    assert [e["decision"] for e in decided(entries)] == ["dry_run"], entries
    time.sleep(1)
    assert rollback.runs() == [] and finished(config.actions()) == []
    daemon.stop()


def test_dependency_suppresses_the_dependent_rules_action(setup, target, rollback, daemons):
    config = setup("""
        [rule db]
        critical = api.status >= 500

        [rule api]
        critical    = api.status >= 500
        depends     = db
        on_critical = rollback

        [action rollback]
        type     = exec
        command  = {rollback}
        cooldown = 0s
    """)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    entries = wait_journal(config, decided, "a decision")
    assert [(e["rule"], e["decision"]) for e in decided(entries)] == [
        ("api", "suppressed_dependency")], entries
    wait_until(lambda: "suppressed_dependency (held by db)" in daemon.log(), WAIT,
               "the log to say which dependency holds the action")
    time.sleep(1)
    assert rollback.runs() == []
    daemon.stop()


def test_two_rules_at_the_same_instant_share_one_breaker(setup, target, rollback, daemons):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = rollback

        [rule api_too]
        critical    = api.status >= 500
        on_critical = rollback_too

        [action rollback]
        type     = exec
        command  = {rollback}
        cooldown = 0s

        [action rollback_too]
        type     = exec
        command  = {rollback}
        cooldown = 0s
    """, max_actions=1)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    entries = wait_journal(config, lambda e: len(decided(e)) >= 2, "two decisions")
    time.sleep(1)
    both = decided(config.actions())
    assert sorted(e["decision"] for e in both) == ["executed", "suppressed_breaker"], both
    assert {e["rule"] for e in both} == {"api", "api_too"}, both
    assert abs(both[0]["ts_ms"] - both[1]["ts_ms"]) < 200, "both entered critical together"
    wait_journal(config, lambda e: len(finished(e)) >= 1, "the admitted action to finish")
    assert len(rollback.runs()) == 1
    daemon.stop()


def test_incident_that_resolved_while_down_is_closed_and_reported_without_acting_again(
        setup, target, rollback, daemons):
    config = setup("""
        [rule api]
        critical    = api.status >= 500
        on_critical = rollback

        [action rollback]
        type     = exec
        command  = {rollback}
        cooldown = 0s
    """)
    daemon = start(daemons, config, target)
    target.set_mode("error")
    wait_journal(config, finished, "the rollback to finish")
    incident_id = decided(config.actions())[0]["incident"]
    daemon.kill()
    state = json.loads((config.state_dir / "state.json").read_text())
    assert state["incidents"]["api"]["id"] == incident_id, state

    target.set_mode("healthy")  # it recovers while rollguard is down
    restarted = start(daemons, config, target)
    wait_until(lambda: f"incident {incident_id} resolved while rollguard was not running"
               in restarted.log(), WAIT, "the resolution to be reported")
    wait_until(lambda: "api" not in json.loads(
        (config.state_dir / "state.json").read_text())["incidents"], WAIT,
        "state.json to drop the closed incident")
    assert len(rollback.runs()) == 1 and len(decided(config.actions())) == 1
    restarted.stop()
