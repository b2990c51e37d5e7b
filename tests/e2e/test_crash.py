"""Crash safety: kill -9 the daemon at random moments while incidents come and go, actions
run and state.json is rewritten — dozens of times — then check what survived:

  * every start succeeds (state.json is never left unreadable);
  * state.json parses; actions.jsonl parses, except at most a torn last line, which the
    next start drops;
  * the breaker never admitted more than max_actions in any window (from the journal);
  * no incident has two executions (from the journal and from the action's own marker).

The target flips between healthy and failing on its own schedule, independent of the
kills, so kills land before, during and after decisions, journal appends, state writes
and running actions. The seed is printed so a failure can be replayed.
"""

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

from harness import decided, wait_until

ROUNDS = 36
WINDOW_MS = 4000
MAX_ACTIONS = 2

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = rollguard.sock

    [breaker]
    max_actions = 2
    window      = 4s
    cooldown    = 2s
"""

RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 100ms
    timeout       = 90ms
    expect_status = 200-599

    [rule api]
    critical    = api.status >= 500
    on_critical = rollback

    [action rollback]
    type     = exec
    shell    = true
    command  = echo "$ROLLGUARD_INCIDENT" >> {tmp}/incidents.marker; sleep 0.2
    cooldown = 0s
"""


def flip(target, stop, rng):
    """Healthy and failing spells of 150-600ms until `stop` is set."""
    while not stop.is_set():
        target.set_mode(rng.choice(["healthy", "error", "error"]))
        stop.wait(rng.uniform(0.15, 0.6))
    target.set_mode("healthy")


def read_journal_allowing_torn_tail(path):
    """(records, torn): every line must parse except possibly a last one without newline."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    lines = data.split(b"\n")
    records, torn = [], False
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            last = number == len(lines)  # no newline after it
            assert last, f"{path}:{number}: a line in the middle does not parse: {line!r}"
            torn = True
    return records, torn


def test_kill_9_at_random_points_never_breaks_state_nor_doubles_an_action(make_config, target,
                                                                          daemons, tmp_path):
    seed = int(os.environ.get("ROLLGUARD_CRASH_SEED", time.time()))
    print(f"seed {seed} (ROLLGUARD_CRASH_SEED={seed} replays the kill schedule)")
    rng = random.Random(seed)
    config = make_config(MAIN, {"api.rules": RULES})
    stop = threading.Event()
    flipper = threading.Thread(target=flip, args=(target, stop, random.Random(seed + 1)),
                               daemon=True)
    flipper.start()
    started = time.monotonic()
    try:
        for round_number in range(ROUNDS):
            daemon = daemons(config, log_name=f"rollguard-{round_number}.log")
            since = time.time()
            # Alive long enough to have probed (and maybe acted), then killed anywhere.
            wait_until(lambda: (daemon.assert_running(), len(target.requests_since(since)) >= 1)[1],
                       10, "a first probe request")
            time.sleep(rng.uniform(0.0, 0.8))
            daemon.assert_running()
            daemon.kill()
            state = config.state_dir / "state.json"
            if state.exists():
                json.loads(state.read_text())  # never half-written
            read_journal_allowing_torn_tail(config.journal)
    finally:
        stop.set()
        flipper.join(timeout=5)
    elapsed = time.monotonic() - started

    # A last, clean run over whatever the kills left behind.
    final = daemons(config, log_name="rollguard-final.log")
    wait_until(lambda: (final.assert_running(), " started: " in final.log())[1], 10,
               "the final start to finish starting")
    time.sleep(0.5)
    final.stop()

    state = json.loads((config.state_dir / "state.json").read_text())
    records, torn = read_journal_allowing_torn_tail(config.journal)
    assert not torn, "the final start must drop a torn last line left by a kill"
    assert state["journal_records"] == len(records), "state.json covers every journal record"

    executed = [r for r in decided(records) if r.get("decision") == "executed"]
    assert executed, f"no action ran in {ROUNDS} rounds: the test exercised nothing"

    # The breaker: never more than MAX_ACTIONS admissions within any WINDOW_MS.
    times = sorted(r["ts_ms"] for r in executed)
    for i, t in enumerate(times):
        in_window = [u for u in times[: i + 1] if t - u < WINDOW_MS]
        assert len(in_window) <= MAX_ACTIONS, (
            f"breaker admitted {len(in_window)} within {WINDOW_MS}ms ending at {t}: {times}")

    # One execution per incident, in the journal and in what actually ran.
    per_incident = Counter(r["incident"] for r in executed)
    doubled = {k: n for k, n in per_incident.items() if n > 1}
    assert not doubled, f"incidents executed more than once: {doubled}"
    marker = tmp_path / "incidents.marker"
    wait_until(lambda: marker.exists(), 5, "the action's marker")
    time.sleep(0.5)  # actions orphaned by the last kill finish their echo
    ran = Counter(line for line in marker.read_text().splitlines() if line)
    assert not {k: n for k, n in ran.items() if n > 1}, f"an incident's action ran twice: {ran}"
    assert set(ran) <= set(per_incident), "an action ran that the journal does not record"
    print(f"{ROUNDS} kills in {elapsed:.1f}s: {len(executed)} executions over "
          f"{len(per_incident)} incidents, {len(decided(records))} decisions")
    assert elapsed < 110, f"the kill loop took {elapsed:.0f}s"
