"""SIGHUP reloads the config; a config that fails `check` is rejected whole and the
running one keeps working (spec §8)."""

import signal

from harness import decided, wait_until
from test_rollback import API_RULES, MAIN, WAIT, incident, start_with_data, wait_for_probes

BROKEN_RULES = API_RULES.replace("critical    = api.status >= 500", "critical    = api.status >=")

# The same probe and action; a 503 now only warns, and warning runs the rollback.
CHANGED_RULES = API_RULES.replace("critical    = api.status >= 500",
                                  "warning     = api.status >= 500").replace(
                                      "on_critical = rollback", "on_warning  = rollback")


def test_broken_config_on_sighup_keeps_the_running_one(make_config, target, rollback, daemons):
    assert BROKEN_RULES != API_RULES and CHANGED_RULES != API_RULES
    config = make_config(MAIN, {"api.rules": API_RULES}, window="30s", cooldown="5s")
    daemon = start_with_data(daemons, config, target)

    config.write("rules.d/api.rules", BROKEN_RULES)
    daemon.process.send_signal(signal.SIGHUP)
    wait_for_probes(target, 5, daemon=daemon)  # a second to try the reload and reject it
    daemon.assert_running()

    entry = incident(config, target, daemon)
    assert (entry["grade"], entry["decision"]) == ("critical", "executed"), (
        f"after a rejected reload the old rules must keep acting: {entry}")
    assert rollback.runs() == [("api", "critical", "excellent")]
    daemon.stop()


def test_valid_config_on_sighup_takes_effect(make_config, target, rollback, daemons):
    config = make_config(MAIN, {"api.rules": API_RULES}, window="30s", cooldown="5s")
    daemon = start_with_data(daemons, config, target)

    config.write("rules.d/api.rules", CHANGED_RULES)
    daemon.process.send_signal(signal.SIGHUP)
    wait_for_probes(target, 5, daemon=daemon)
    daemon.assert_running()

    target.set_mode("error")
    wait_until(rollback.runs, WAIT, "the rollback under the reloaded rules")
    entry = decided(config.actions())[0]
    assert (entry["grade"], entry["decision"]) == ("warning", "executed"), (
        f"the reloaded rule grades a 503 as warning and acts on warning: {entry}")
    assert rollback.runs() == [("api", "warning", "excellent")]
    daemon.stop()
