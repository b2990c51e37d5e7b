"""The control socket end to end: `rollguard status|pause|resume|breaker reset|deployed`
run as real CLI processes against a running daemon, which finds the socket through
--config (only its [daemon] section is read).

Timing as in test_rollback.py: probes every 200ms; the action's own cooldown is 0s.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from harness import binary, decided, finished, run_cli, wait_until

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

API_RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 200ms
    timeout       = 150ms
    expect_status = 200-599

    [rule api]
    critical    = api.status >= 500
    on_critical = rollback
    summary     = api answered {{ api.status }}

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""

WAIT = 10


@pytest.fixture
def socket_dir():
    """A short folder for the socket: pytest's tmp_path can exceed sun_path's 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(make_config, socket_dir):
    return make_config(MAIN, {"api.rules": API_RULES}, socket=socket_dir / "rollguard.sock",
                       max_actions=1)


def cli(config, *args, **kwargs):
    return run_cli(*args, "--config", config.main, **kwargs)


def wait_socket(config, daemon):
    def ready():
        daemon.assert_running()
        return cli(config, "status").returncode == 0
    wait_until(ready, WAIT, "the control socket to answer `rollguard status`")


def start(daemons, config, target):
    daemon = daemons(config)
    wait_socket(config, daemon)
    since = time.time()
    wait_until(lambda: len(target.requests_since(since)) >= 3, WAIT, "3 probe requests")
    return daemon


def incident(config, target, count):
    """Makes the target fail until `count` decisions are journaled; heals it; returns them."""
    recoveries = daemon_log(config).count("-> excellent")
    target.set_mode("error")
    wait_until(lambda: len(decided(config.actions())) >= count, WAIT, f"{count} decisions")
    executed = [e for e in decided(config.actions()) if e["decision"] == "executed"]
    wait_until(lambda: len(finished(config.actions())) >= len(executed), WAIT, "actions to finish")
    target.set_mode("healthy")
    wait_until(lambda: daemon_log(config).count("-> excellent") > recoveries, WAIT, "recovery")
    return decided(config.actions())


def daemon_log(config):
    return "".join(p.read_text(errors="replace") for p in Path(config.root).glob("rollguard-*.log"))


def test_status_prints_rules_breakers_and_last_actions(config, target, rollback, daemons):
    daemon = start(daemons, config, target)
    wait_until(lambda: "excellent" in cli(config, "status").stdout, WAIT, "api graded excellent")
    target.set_mode("error")
    wait_until(lambda: len(finished(config.actions())) >= 1, WAIT, "the rollback to finish")
    wait_until(lambda: "critical" in cli(config, "status").stdout, WAIT, "status to show critical")
    result = cli(config, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in ("RULES", "BREAKERS", "LAST ACTIONS", "actions: enabled"):
        assert heading in out, f"status lacks {heading!r}:\n{out}"
    rule_lines = [line.split() for line in out.splitlines() if line.strip().startswith("api ")]
    assert rule_lines and rule_lines[0][1] == "critical", out
    breaker_lines = [line.split() for line in out.splitlines()
                     if line.strip().startswith("default ")]
    assert breaker_lines and breaker_lines[0][1:3] == ["open", "1/1"], out
    action_lines = [line for line in out.splitlines() if " rollback " in line]
    assert action_lines and "executed" in action_lines[0] and "ok" in action_lines[0], out
    daemon.stop()


def test_pause_suppresses_actions_persists_across_restart_and_resume_ends_it(
        config, target, rollback, daemons):
    daemon = start(daemons, config, target)
    paused = cli(config, "pause", "1h")
    assert paused.returncode == 0, paused.stderr
    assert "paused until" in paused.stdout, paused.stdout
    assert "PAUSED until" in cli(config, "status").stdout

    entries = incident(config, target, 1)
    assert [e["decision"] for e in entries] == ["suppressed_paused"], entries
    assert rollback.runs() == [], "a paused daemon ran an action"

    daemon.kill()  # the pause is in state.json, not only in memory
    state = json.loads((config.state_dir / "state.json").read_text())
    assert state.get("paused_until_ms"), state
    daemon = start(daemons, config, target)
    assert "PAUSED until" in cli(config, "status").stdout, "a restart forgot the pause"

    resumed = cli(config, "resume")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, (resumed.stdout, resumed.stderr)
    assert "actions: enabled" in cli(config, "status").stdout
    entries = incident(config, target, 2)
    assert [e["decision"] for e in entries] == ["suppressed_paused", "executed"], entries
    assert len(rollback.runs()) == 1
    daemon.stop()


def test_breaker_reset_is_journaled_and_admits_again(config, target, rollback, daemons):
    daemon = start(daemons, config, target)
    incident(config, target, 1)
    entries = incident(config, target, 2)
    assert [e["decision"] for e in entries] == ["executed", "suppressed_breaker"], entries

    unknown = cli(config, "breaker", "reset", "nosuch")
    assert unknown.returncode == 1, unknown
    assert 'no breaker named "nosuch"' in unknown.stderr and "default" in unknown.stderr, unknown

    reset = cli(config, "breaker", "reset")
    assert reset.returncode == 0, reset.stderr
    assert "breaker default reset" in reset.stdout, reset.stdout
    resets = [e for e in decided(config.actions()) if e["decision"] == "breaker_reset"]
    assert len(resets) == 1 and resets[0]["breaker"] == "default", config.actions()
    status = cli(config, "status").stdout
    breaker_lines = [line.split() for line in status.splitlines()
                     if line.strip().startswith("default ")]
    assert breaker_lines and breaker_lines[0][1] == "closed", status

    entries = [e for e in incident(config, target, 4) if e["decision"] != "breaker_reset"]
    assert [e["decision"] for e in entries] == ["executed", "suppressed_breaker", "executed"]
    assert len(rollback.runs()) == 2
    daemon.stop()


def test_breaker_reset_survives_kill_9_before_anything_else_happens(config, target, rollback,
                                                                    daemons):
    daemon = start(daemons, config, target)
    incident(config, target, 1)  # the breaker (max 1) is open now
    assert cli(config, "breaker", "reset").returncode == 0
    daemon.kill()
    daemon = start(daemons, config, target)
    entries = incident(config, target, 3)
    assert entries[-1]["decision"] == "executed", entries
    daemon.stop()


def test_cli_errors_are_clear_when_no_daemon_runs(config):
    result = cli(config, "status")
    assert result.returncode == 1, result
    assert "rollguard is not running" in result.stderr, result
    assert "rollguard.sock" in result.stderr, result
    usage = cli(config, "pause", "soon")
    assert usage.returncode == 2 and "duration" in usage.stderr, usage
    usage = cli(config, "breaker", "open")
    assert usage.returncode == 2 and "breaker reset" in usage.stderr, usage
    missing = run_cli("status", "--config", Path(config.root) / "nope.conf")
    assert missing.returncode == 2 and "cannot read the config" in missing.stderr, missing


@pytest.fixture
def throwaway_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway unprivileged user (useradd)")
    if not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("useradd/runuser not installed")
    name = "rgtest" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_control_socket_refuses_an_unprivileged_user(make_config, target, rollback, daemons,
                                                     throwaway_user):
    # The socket lives in a folder everyone may enter, so the socket's own mode decides.
    public = Path(tempfile.mkdtemp(prefix="rollguard-socket-"))
    try:
        public.chmod(0o755)
        config = make_config(MAIN, {"api.rules": API_RULES}, folder="conf",
                             socket=public / "rollguard.sock", max_actions=1)
        daemon = daemons(config)
        wait_socket(config, daemon)
        mode = (public / "rollguard.sock").stat().st_mode & 0o777
        assert mode & 0o007 == 0, f"the socket is open to others: {oct(mode)}"
        # The unprivileged user needs a config it can read: a copy of the [daemon] section.
        readable = public / "client.conf"
        readable.write_text(f"[daemon]\nsocket = {public / 'rollguard.sock'}\n")
        readable.chmod(0o644)
        refused = subprocess.run(
            ["runuser", "-u", throwaway_user.pw_name, "--", binary(), "status", "--config",
             str(readable)], capture_output=True, text=True, timeout=30, cwd="/")
        assert refused.returncode == 1, refused
        assert "permission denied" in refused.stderr, refused.stderr
        assert "root and the rollguard group" in refused.stderr, refused.stderr
        for command in (["pause", "1h"], ["deployed"], ["breaker", "reset"]):
            denied = subprocess.run(
                ["runuser", "-u", throwaway_user.pw_name, "--", binary(), *command, "--config",
                 str(readable)], capture_output=True, text=True, timeout=30, cwd="/")
            assert denied.returncode == 1 and "permission denied" in denied.stderr, denied
        # Root still gets in, and nothing the user tried took effect.
        status = cli(config, "status")
        assert status.returncode == 0 and "actions: enabled" in status.stdout, status
        daemon.stop()
    finally:
        shutil.rmtree(public, ignore_errors=True)


@pytest.fixture
def rollguard_group_member(throwaway_user):
    """The throwaway user as a member of group rollguard (created for the test when the
    machine has none, and removed again)."""
    import grp
    created = False
    try:
        grp.getgrnam("rollguard")
    except KeyError:
        subprocess.run(["groupadd", "--system", "rollguard"], check=True, capture_output=True)
        created = True
    try:
        subprocess.run(["usermod", "-a", "-G", "rollguard", throwaway_user.pw_name], check=True,
                       capture_output=True)
        yield throwaway_user
    finally:
        if created:
            subprocess.run(["groupdel", "rollguard"], capture_output=True)


def test_control_socket_admits_a_member_of_the_rollguard_group(make_config, target, rollback,
                                                               daemons, rollguard_group_member):
    public = Path(tempfile.mkdtemp(prefix="rollguard-socket-"))
    try:
        public.chmod(0o755)
        config = make_config(MAIN, {"api.rules": API_RULES}, folder="conf",
                             socket=public / "rollguard.sock", max_actions=1)
        daemon = daemons(config)
        wait_socket(config, daemon)
        info = (public / "rollguard.sock").stat()
        import grp
        assert grp.getgrgid(info.st_gid).gr_name == "rollguard", "socket not owned by the group"
        assert info.st_mode & 0o060 == 0o060 and info.st_mode & 0o007 == 0, oct(info.st_mode)
        readable = public / "client.conf"
        readable.write_text(f"[daemon]\nsocket = {public / 'rollguard.sock'}\n")
        readable.chmod(0o644)

        def as_member(*command):
            return subprocess.run(
                ["runuser", "-u", rollguard_group_member.pw_name, "--", binary(), *command,
                 "--config", str(readable)], capture_output=True, text=True, timeout=30, cwd="/")

        status = as_member("status")
        assert status.returncode == 0, status
        assert "RULES" in status.stdout and "api" in status.stdout, status.stdout
        paused = as_member("pause", "10m")
        assert paused.returncode == 0, paused
        # The member's pause took effect in the daemon, as root sees it.
        assert "PAUSED until" in cli(config, "status").stdout
        assert as_member("resume").returncode == 0
        assert "actions: enabled" in cli(config, "status").stdout
        daemon.stop()
    finally:
        shutil.rmtree(public, ignore_errors=True)
