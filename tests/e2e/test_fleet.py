"""Fleet mode end to end: several real rollguard daemons (separate processes, separate
state folders) watch one HTTP target and share one breaker in a real redis-server on
loopback, started by the test with an fsync'd append-only file.

Each round is one bad deploy: the test records deploy vN on every daemon (as a deploy
script would), makes the target fail, and waits until every daemon has decided. The
rollback script appends one line to one marker file shared by all daemons, so the count
of runs is fleet-wide. The test heals the target itself once every daemon has decided.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import LOOPBACK, decided, finished, run_cli, wait_until

MAIN = """
    [daemon]
    name      = {name}
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = rollguard.sock

    [breaker fleet]
    scope       = fleet
    redis       = 127.0.0.1:{redis_port}
    password_file = {redis_password_file}
    key_prefix  = {prefix}
    max_actions = 3
    window      = 1h
    cooldown    = 30m
    timeout     = 1s
    lease       = {lease}
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

    [action rollback]
    type     = exec
    command  = {command}
    timeout  = 60s
    cooldown = 0s
    breaker  = fleet
    scope    = fleet
"""

WAIT = 15
PASSWORD = "fleet-e2e-pw"


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server on loopback whose data survives a kill -9 (appendfsync always),
    as a fleet's Redis should be run (docs/fleet.md)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", LOOPBACK,
             "--requirepass", PASSWORD, "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--logfile", str(self.folder / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait_until(lambda: self.cli("PING") == "PONG", 10, "redis-server to answer PING")
        return self

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def cli(self, *args):
        env = dict(os.environ, REDISCLI_AUTH=PASSWORD)
        result = subprocess.run(["redis-cli", "-h", LOOPBACK, "-p", str(self.port), *args],
                                capture_output=True, text=True, env=env, timeout=10)
        return result.stdout.strip()


@pytest.fixture
def redis(tmp_path):
    if not os.path.exists("/usr/bin/redis-server"):
        pytest.skip("redis-server is not installed")
    server = Redis(tmp_path / "redis").start()
    yield server
    server.kill()


def fleet(make_config, daemons, target, redis, tmp_path, count, command, lease="3s"):
    """`count` daemons d0..d{count-1}, each with its own config and state folder."""
    password_file = tmp_path / "redis.password"
    password_file.write_text(PASSWORD + "\n")
    started = []
    for i in range(count):
        config = make_config(MAIN, {"api.rules": RULES}, folder=f"d{i}", name=f"d{i}",
                             redis_port=redis.port, redis_password_file=password_file,
                             prefix="e2e:", lease=lease, command=command)
        started.append(daemons(config, log_name="rollguard.log"))
    since = time.time()
    wait_until(lambda: len(target.requests_since(since)) >= 3 * count, WAIT,
               "every daemon to probe the target")
    return started


def deploy(members, version):
    for daemon in members:
        result = run_cli("deployed", "--version", version, "--config", daemon.config.main)
        assert result.returncode == 0, result.stderr


def fleet_decisions(members, incident):
    """Each daemon's decided lines for `incident`: {daemon name: [entries]}."""
    return {d.config.root.name: decided(d.config.actions(), fleet_incident=incident)
            for d in members}


def wait_new_decisions(members, incident, before):
    """Waits until every daemon has one more decided line for `incident` than in
    `before` ({name: count}); returns the new lines, {name: [entries]}."""
    def all_decided():
        for d in members:
            d.assert_running()
        now = fleet_decisions(members, incident)
        return all(len(entries) > before.get(name, 0) for name, entries in now.items())
    wait_until(all_decided, WAIT, f"every daemon to decide on incident {incident}")
    return {name: entries[before.get(name, 0):]
            for name, entries in fleet_decisions(members, incident).items()}


def counts(members, incident):
    return {name: len(entries) for name, entries in fleet_decisions(members, incident).items()}


def bad_deploy(members, target, version):
    """Deploy `version`, break the target, wait until every daemon decided; then heal.
    Returns this round's decisions, {daemon name: [decision]}."""
    incident = f"api@{version}"
    before = counts(members, incident)
    deploy(members, version)
    target.set_mode("error")
    result = wait_new_decisions(members, incident, before)
    # An executed action finishes (and writes its result into the claim) before we go on.
    for d in members:
        runs = [e for e in decided(d.config.actions(), fleet_incident=incident)
                if e["decision"] == "executed"]
        wait_until(lambda: len(finished(d.config.actions(), fleet_incident=incident)) >=
                   len(runs), WAIT, f"{d.config.root.name} to finish its action")
    target.set_mode("healthy")
    since = time.time()
    wait_until(lambda: len(target.requests_since(since)) >= 3 * len(members), WAIT,
               "healthy probes from every daemon")
    time.sleep(0.2)
    return {name: [e["decision"] for e in entries] for name, entries in result.items()}


def test_five_daemons_run_three_rollbacks_fleet_wide_each_on_exactly_one(
        make_config, daemons, target, rollback, redis, tmp_path):
    # The test heals the target once every daemon has decided: a rollback that healed it
    # at once could do so before a slower daemon's next probe ever saw the failure.
    members = fleet(make_config, daemons, target, redis, tmp_path, 5, rollback.command)

    for round_number in range(1, 6):
        version = f"v{round_number}"
        decisions = bad_deploy(members, target, version)
        flat = sorted(d for entries in decisions.values() for d in entries)
        assert all(len(entries) == 1 for entries in decisions.values()), decisions
        if round_number <= 3:
            assert flat == ["executed"] + ["suppressed_fleet"] * 4, (version, decisions)
            holder = [name for name, d in decisions.items() if d == ["executed"]][0]
            for name, entries in fleet_decisions(members, f"api@{version}").items():
                assert entries[0]["fleet_holder"] == holder, entries
                if name != holder:
                    assert entries[0]["why"].startswith(f"claimed by {holder} ("), entries
        else:
            # The breaker opened at the 3rd admission: nobody runs, nobody claims.
            assert flat == ["suppressed_breaker"] * 5, (version, decisions)
        assert len(rollback.runs()) == min(round_number, 3), rollback.runs()

    assert len(rollback.runs()) == 3
    assert redis.cli("ZCARD", "e2e:breaker:fleet:admitted") == "3"
    # Every daemon shows the fleet breaker as Redis sees it (read every 5 s): open, 3 of 3.
    def fleet_row(daemon):
        status = run_cli("status", "--config", daemon.config.main)
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if line.split()[:1] == ["fleet"]]
        return rows[0] if rows else status.stdout
    for daemon in members:
        wait_until(lambda: "open" in fleet_row(daemon) and "3/3" in fleet_row(daemon), 10,
                   f"{daemon.config.root.name}'s status to show the fleet breaker open, 3/3")
    # ... and, on every daemon, who ran each rollback and how it went.
    status = run_cli("status", "--config", members[-1].config.main).stdout
    for version in ("v1", "v2", "v3"):
        assert f" ran rollback:api@{version}: ok at " in status, status
    for daemon in members:
        daemon.stop()


def test_redis_down_fails_closed_and_nothing_runs_twice_when_it_returns(
        make_config, daemons, target, rollback, redis, tmp_path):
    members = fleet(make_config, daemons, target, redis, tmp_path, 5, rollback.command)

    assert sorted(d for e in bad_deploy(members, target, "v1").values() for d in e) == \
        ["executed"] + ["suppressed_fleet"] * 4
    assert len(rollback.runs()) == 1

    redis.kill()  # mid-incident: the next bad deploy finds no Redis
    deploy(members, "v2")
    target.set_mode("error")
    down = wait_new_decisions(members, "api@v2", {})
    for name, entries in down.items():
        assert [e["decision"] for e in entries] == ["suppressed_fleet"], (name, entries)
        assert "unreachable" in entries[0]["why"] and "fail closed" in entries[0]["why"], entries
    time.sleep(1)
    assert len(rollback.runs()) == 1, "an action ran while Redis was down"
    target.set_mode("healthy")

    redis.start()  # same port, same append-only file: the claims of v1 are back
    # v1 again (a redeploy of the same version) is the same incident: it ran once already.
    assert sorted(d for e in bad_deploy(members, target, "v1").values() for d in e) == \
        ["suppressed_fleet"] * 5
    assert len(rollback.runs()) == 1, "an incident already acted on ran again"
    # A new deploy is a new incident, decided normally again.
    assert sorted(d for e in bad_deploy(members, target, "v3").values() for d in e) == \
        ["executed"] + ["suppressed_fleet"] * 4
    assert len(rollback.runs()) == 2
    for daemon in members:
        daemon.stop()


def test_a_holder_killed_while_running_loses_its_lease_and_nobody_reruns_it(
        make_config, daemons, target, redis, tmp_path):
    marker = tmp_path / "slow.marker"
    script = tmp_path / "slow-rollback.sh"
    script.write_text(f"#!/bin/sh\necho run >> {marker}\nsleep 8\n")
    script.chmod(0o755)
    members = fleet(make_config, daemons, target, redis, tmp_path, 3, str(script), lease="1s")

    deploy(members, "v1")
    target.set_mode("error")
    decisions = wait_new_decisions(members, "api@v1", {})
    holders = [d for d in members if decisions[d.config.root.name][0]["decision"] == "executed"]
    assert len(holders) == 1, decisions
    holder = holders[0]
    wait_until(marker.exists, WAIT, "the slow rollback to start")
    holder.kill()  # kill -9 while it holds the lease (the action keeps sleeping)

    claim = "e2e:claim:rollback:api@v1"
    lease_until = int(redis.cli("HGET", claim, "lease_until"))
    wait_until(lambda: int(redis.cli("TIME").split()[0]) * 1000 > lease_until + 500, WAIT,
               "the holder's lease to run out")
    assert redis.cli("HGET", claim, "result") == "running"

    # The same incident comes back on the survivors: they see a lost lease, and do not run.
    survivors = [d for d in members if d is not holder]
    target.set_mode("healthy")
    since = time.time()
    wait_until(lambda: len(target.requests_since(since)) >= 6, WAIT, "healthy probes")
    time.sleep(0.3)
    target.set_mode("error")
    again = wait_new_decisions(survivors, "api@v1", {d.config.root.name: 1 for d in survivors})
    for name, entries in again.items():
        assert entries[0]["decision"] == "suppressed_fleet", (name, entries)
        assert "lease lost" in entries[0]["why"], entries[0]
        assert entries[0]["fleet_holder"] == holder.config.root.name, entries[0]
    assert marker.read_text().count("run") == 1
    expected = f"{holder.config.root.name} holds rollback:api@v1 (lease lost"
    wait_until(lambda: expected in run_cli("status", "--config", survivors[0].config.main).stdout,
               10, f"status to show '{expected}'")
    for daemon in survivors:
        daemon.stop()
