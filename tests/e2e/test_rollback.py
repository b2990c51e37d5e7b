"""Rollbacks end to end: the daemon probes a real HTTP target, grades it, runs a real
rollback script, journals every decision, and never acts more than its breaker allows —
across a kill -9 too.

Timing: probes every 200ms, the breaker's window is 30s (so every incident of a test
falls inside it) and the action's own cooldown is 0s (so only the breaker refuses).
Whether the script ran is counted from its marker file, not only from the journal.
"""

import time

import pytest

from harness import decided, finished, wait_until

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = rollguard.sock

    [breaker]
    max_actions = 3
    window      = {window}
    cooldown    = {cooldown}
"""

# expect_status admits 5xx so a 503 is `up` with status 503 (critical), while a refused
# connection is `up` 0 (failure): each kind of incident enters exactly one grade.
API_RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 200ms
    timeout       = 150ms
    expect_status = 200-599

    [rule api]
    failure     = not api for 1s
    critical    = api.status >= 500
    on_critical = rollback
    on_failure  = rollback

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""

PROBE_INTERVAL = 0.2
WAIT = 10  # seconds: the bound for anything that should take a few probe intervals


@pytest.fixture
def config(make_config):
    return make_config(MAIN, {"api.rules": API_RULES}, window="30s", cooldown="5s")


def wait_for_probes(target, count, since=None, timeout=WAIT, daemon=None):
    """Waits until the target answered `count` /health requests since `since`; fails
    at once with the daemon's log when `daemon` has exited meanwhile."""
    since = time.time() if since is None else since

    def probed():
        if daemon is not None:
            daemon.assert_running()
        return len(target.requests_since(since)) >= count
    wait_until(probed, timeout, f"{count} probe requests to the target")


def start_with_data(daemons, config, target, *args):
    """Starts the daemon and waits until the rule has seen a few healthy results."""
    daemon = daemons(config, *args)
    wait_for_probes(target, 3, since=daemon.started_at, daemon=daemon)
    return daemon


def wait_decisions(config, count, timeout=WAIT):
    """Waits for `count` decided lines; returns all decided lines."""
    wait_until(lambda: len(decided(config.actions())) >= count, timeout,
               f"{count} decided lines in {config.journal}")
    return decided(config.actions())


def wait_finished(config, count, timeout=WAIT):
    """Waits for `count` finished lines; returns all finished lines."""
    wait_until(lambda: len(finished(config.actions())) >= count, timeout,
               f"{count} finished lines in {config.journal}")
    return finished(config.actions())


def recover(target, daemon):
    """Heals the target and waits until the rule has had healthy results again."""
    target.set_mode("healthy")
    wait_for_probes(target, 3, daemon=daemon)
    time.sleep(PROBE_INTERVAL / 2)  # the last answer has been evaluated
    daemon.assert_running()


def incident(config, target, daemon):
    """One 503 incident: waits for its decision, then heals. Returns the decision."""
    before = len(decided(config.actions()))
    target.set_mode("error")
    entries = wait_decisions(config, before + 1)
    decision = entries[before]
    executed = len([e for e in decided(config.actions()) if e.get("decision") == "executed"])
    wait_finished(config, executed)  # an executed action has completed before we go on
    recover(target, daemon)
    return decision


def decisions(config):
    return [e.get("decision") for e in decided(config.actions())]


def test_rollback_runs_once_per_incident_while_target_stays_unhealthy(config, target, rollback,
                                                                     daemons):
    daemon = start_with_data(daemons, config, target)
    assert rollback.runs() == [] and config.actions() == [], "acted on a healthy target"

    target.set_mode("error")
    wait_until(rollback.runs, WAIT, "the rollback script to run")
    wait_for_probes(target, 15, daemon=daemon)  # unhealthy for 15 more probe intervals

    assert rollback.runs() == [("api", "critical", "excellent")]
    entries = config.actions()
    executed = decided(entries)
    assert [(e["rule"], e["action"], e["grade"], e["decision"]) for e in executed] == [
        ("api", "rollback", "critical", "executed")], entries
    assert executed[0]["previous_grade"] == "excellent", executed[0]
    done = wait_finished(config, 1)
    assert len(done) == 1, entries
    assert done[0]["id"] == executed[0]["id"], "finished line must carry the decision's id"
    assert (done[0]["rule"], done[0]["action"], done[0]["result"], done[0]["exit_code"]) == (
        "api", "rollback", "ok", 0), done[0]
    duration = done[0]["duration_seconds"]
    assert isinstance(duration, (int, float)) and duration >= 0, done[0]
    for entry in entries:
        for field in ("time", "ts_ms", "phase", "id", "rule", "action", "grade", "incident"):
            assert field in entry, f"journal line lacks {field!r}: {entry}"
    assert len(decided(config.actions())) == 1, "the rule stayed critical: no further decision"
    daemon.stop()


def test_breaker_admits_three_and_suppresses_the_fourth(config, target, rollback, daemons):
    rollback.heals(True)  # the script really rolls the target back
    daemon = start_with_data(daemons, config, target)

    for _ in range(3):
        assert incident(config, target, daemon)["decision"] == "executed", config.actions()
    assert len(rollback.runs()) == 3 and target.rollbacks == 3

    target.set_mode("error")
    fourth = wait_decisions(config, 4)[3]
    assert fourth["decision"] == "suppressed_breaker", fourth
    assert fourth["rule"] == "api" and fourth["action"] == "rollback", fourth
    assert fourth.get("open_until"), f"a breaker refusal says until when: {fourth}"
    # Not queued: the target stays broken, the script does not run.
    wait_for_probes(target, 10)
    assert len(rollback.runs()) == 3 and target.rollbacks == 3
    assert len(finished(config.actions())) == 3
    assert decisions(config) == ["executed"] * 3 + ["suppressed_breaker"]
    daemon.stop()


def test_breaker_stays_open_across_kill_9(config, target, rollback, daemons):
    rollback.heals(True)
    daemon = start_with_data(daemons, config, target)
    for _ in range(3):
        assert incident(config, target, daemon)["decision"] == "executed", config.actions()
    daemon.kill()  # SIGKILL right after the breaker opened
    assert (config.state_dir / "state.json").exists(), "breaker state is kept in state.json"

    restarted = start_with_data(daemons, config, target)
    target.set_mode("error")
    entry = wait_decisions(config, 4)[3]
    assert entry["decision"] == "suppressed_breaker", (
        f"a restart must never reset a breaker; the 4th incident was: {entry}")
    wait_for_probes(target, 5)
    assert len(rollback.runs()) == 3
    restarted.stop()


def test_restart_does_not_rerun_the_action_of_an_incident_already_acted_on(config, target,
                                                                           rollback, daemons):
    daemon = start_with_data(daemons, config, target)
    target.set_mode("error")
    wait_finished(config, 1)
    assert len(rollback.runs()) == 1
    daemon.kill()  # the rule is critical and stays so: the target is still failing

    restarted = daemons(config)
    wait_for_probes(target, 10, since=restarted.started_at, daemon=restarted)  # 2s of 503s
    assert len(rollback.runs()) == 1, f"the rollback ran again after the restart: {rollback.runs()}"
    assert decisions(config).count("executed") == 1, config.actions()

    # The resumed daemon still acts on a new incident.
    recover(target, restarted)
    target.set_mode("error")
    wait_until(lambda: len(rollback.runs()) == 2, WAIT, "the rollback for a new incident")
    assert decisions(config).count("executed") == 2, config.actions()
    restarted.stop()


def test_action_environment(config, target, rollback, daemons):
    daemon = start_with_data(daemons, config, target)
    target.set_mode("error")
    wait_until(rollback.environments, WAIT, "the rollback script to run")
    env = rollback.environments()[0]
    assert env.get("ROLLGUARD_RULE") == "api", env
    assert env.get("ROLLGUARD_GRADE") == "critical", env
    assert env.get("ROLLGUARD_PREVIOUS_GRADE") == "excellent", env
    assert env.get("ROLLGUARD_ACTION") == "rollback", env
    assert env.get("ROLLGUARD_DRY_RUN") in ("0", "false"), env
    assert env.get("ROLLGUARD_REASON"), f"ROLLGUARD_REASON is empty: {env}"
    assert "status" in env["ROLLGUARD_REASON"], (
        f"the reason should name the condition that fired: {env['ROLLGUARD_REASON']!r}")
    daemon.stop()


def test_dry_run_journals_but_never_executes(config, target, rollback, daemons):
    daemon = start_with_data(daemons, config, target, "--dry-run")
    target.set_mode("error")
    entry = wait_decisions(config, 1)[0]
    assert entry["decision"] == "dry_run", entry
    assert (entry["rule"], entry["action"], entry["grade"]) == ("api", "rollback", "critical")
    wait_for_probes(target, 5)
    assert rollback.runs() == [], "--dry-run executed the action"
    assert [e for e in finished(config.actions()) if e.get("result")] == [], config.actions()
    daemon.stop()


def test_refused_connection_is_data_and_means_failure(config, target, rollback, daemons):
    daemon = start_with_data(daemons, config, target)
    down_at = time.time()
    target.set_mode("down")
    wait_until(rollback.runs, WAIT, "the rollback for a target that refuses connections")
    assert rollback.runs() == [("api", "failure", "excellent")]
    entry = decided(config.actions())[0]
    assert (entry["grade"], entry["decision"]) == ("failure", "executed"), entry
    # `not api for 1s`: not before the condition held for a second.
    assert entry["ts_ms"] / 1000 >= down_at + 1.0 - 0.05, (
        f"acted {entry['ts_ms'] / 1000 - down_at:.2f}s after the target went down, before "
        f"`for 1s` could hold")
    daemon.stop()


HANGING_RULES = """
    [probe api]
    type     = http
    url      = {url}
    interval = 2s
    timeout  = 1500ms

    [rule api]
    failure     = not api
    on_failure  = rollback

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""


def test_no_action_before_the_first_probe_result(make_config, target, rollback, daemons):
    # The target accepts the connection and never answers: the first result (a timeout,
    # up 0) arrives 1.5s after the first request. Until then the daemon has no data.
    target.set_mode("slow", slow_seconds=30)
    config = make_config(MAIN, {"api.rules": HANGING_RULES}, window="30s", cooldown="5s")
    daemon = daemons(config)
    wait_for_probes(target, 1, since=daemon.started_at, daemon=daemon)
    first_request = target.requests[0]
    time.sleep(max(0.0, first_request + 1.0 - time.time()))
    assert config.actions() == [] and rollback.runs() == [], (
        f"acted before the first probe result: {config.actions()}")

    wait_until(rollback.runs, WAIT, "the rollback once the timeout (up 0) is reported")
    entry = decided(config.actions())[0]
    assert entry["ts_ms"] / 1000 >= first_request + 1.5 - 0.05, (
        f"decided {entry['ts_ms'] / 1000 - first_request:.2f}s after the first request, "
        f"before its 1.5s timeout could produce a result")
    assert (entry["grade"], entry["decision"]) == ("failure", "executed"), entry
    assert len(rollback.runs()) == 1
    daemon.stop()


def test_grade_before_any_data_is_not_reported_as_excellent(config, target, rollback, daemons):
    # The target fails from the start: before its first result the daemon knew nothing,
    # so the grade change it reports must not claim the rule was excellent before.
    target.set_mode("error")
    daemon = daemons(config)
    wait_until(rollback.runs, WAIT, "the rollback for a target that fails from the start")
    entry = decided(config.actions())[0]
    assert (entry["grade"], entry["decision"]) == ("critical", "executed"), entry
    first_change = daemon.grade_changes("api")[0]
    assert first_change[1] != "excellent", (
        f"first grade change logged as {first_change[1]} -> {first_change[2]}: excellent was "
        f"never observed (spec: never reports excellent on data it does not have)")
    assert entry["previous_grade"] != "excellent", entry
    assert rollback.environments()[0]["ROLLGUARD_PREVIOUS_GRADE"] != "excellent"
    daemon.stop()


MISSING_FIELD_RULES = """
    [probe api]
    type     = http
    url      = {url}
    interval = 300ms
    timeout  = 200ms

    [rule api]
    critical    = not (api.status == 200)
    on_critical = rollback

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""


def test_condition_on_a_missing_field_never_fires(make_config, target, rollback, daemons):
    # Every probe times out, so `status` is never known: `api.status == 200` is unknown,
    # and `not unknown` is unknown, which never fires (a missing value is not 0).
    target.set_mode("slow", slow_seconds=30)
    config = make_config(MAIN, {"api.rules": MISSING_FIELD_RULES}, window="30s", cooldown="5s")
    daemon = daemons(config)
    wait_for_probes(target, 5, since=daemon.started_at, daemon=daemon)
    time.sleep(0.3)  # the last request's timeout has been reported
    daemon.assert_running()
    assert config.actions() == [] and rollback.runs() == [], config.actions()

    # Control: with a real 503 the same condition does fire.
    target.set_mode("error")
    wait_until(rollback.runs, WAIT, "the rollback once status is known to be 503")
    daemon.stop()


def test_breaker_cooldown_outlasts_the_window_then_closes(make_config, target, rollback, daemons):
    # window 6s, cooldown 10s: once the three admissions have left the window, only the
    # cooldown keeps the breaker open; after it, the breaker admits again.
    config = make_config(MAIN, {"api.rules": API_RULES}, window="6s", cooldown="10s")
    rollback.heals(True)
    daemon = start_with_data(daemons, config, target)
    for _ in range(3):
        assert incident(config, target, daemon)["decision"] == "executed", config.actions()
    admitted = [e["ts_ms"] / 1000 for e in decided(config.actions())]
    assert admitted[2] - admitted[0] < 5, (
        f"test setup: the three admissions must share one 6s window to open the breaker, "
        f"they spanned {admitted[2] - admitted[0]:.2f}s")
    third = admitted[2]

    time.sleep(max(0.0, third + 6.5 - time.time()))  # the window is clear, the cooldown not
    assert incident(config, target, daemon)["decision"] == "suppressed_breaker", config.actions()

    time.sleep(max(0.0, third + 10.5 - time.time()))  # cooldown over, window clear
    assert incident(config, target, daemon)["decision"] == "executed", config.actions()
    assert len(rollback.runs()) == 4
    daemon.stop()


SLOW_PROBE_RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 2s
    timeout       = 1s
    expect_status = 200-599

    [rule api]
    critical    = api.status >= 500 for 300ms
    on_critical = rollback

    [action rollback]
    type     = exec
    command  = {rollback}
    timeout  = 10s
    cooldown = 0s
"""


def test_for_acts_when_it_elapses_not_at_the_next_probe_result(make_config, target, rollback,
                                                               daemons):
    # Probes every 2s and `for 300ms`: the rule must act 300ms after the first 503 is
    # evaluated. Waiting for the next result would take 2s; the one-second sweep only
    # evaluates a rule that has gone a full second unevaluated. Both are well past the
    # bound below, which leaves ample room for a loaded machine.
    config = make_config(MAIN, {"api.rules": SLOW_PROBE_RULES}, window="30s", cooldown="5s")
    daemon = daemons(config)
    wait_for_probes(target, 1, since=daemon.started_at, daemon=daemon)
    time.sleep(0.2)  # the healthy answer has been evaluated
    target.set_mode("error")
    bad_since = time.time()  # every request from here on is answered 503

    wait_until(rollback.runs, WAIT, "the rollback once `for 300ms` has held")
    assert rollback.runs() == [("api", "critical", "excellent")]
    first_error = target.requests_since(bad_since)[0]
    entry = decided(config.actions())[0]
    assert (entry["grade"], entry["decision"]) == ("critical", "executed"), entry
    acted = entry["ts_ms"] / 1000
    assert acted >= first_error + 0.3 - 0.05, (
        f"acted {acted - first_error:.2f}s after the first 503 was requested, before "
        f"`for 300ms` could hold")
    assert acted < first_error + 0.9, (
        f"acted {acted - first_error:.2f}s after the first 503 was requested: the `for` "
        f"elapsed at 0.3s but nothing evaluated the rule until much later")
    # Causality, whatever the timing: the decision came before the next probe request.
    later = [t for t in target.requests_since(bad_since) if t > first_error]
    assert not later or acted < later[0], (
        f"acted {acted - later[0]:.2f}s after the second 503 was requested")
    daemon.stop()
