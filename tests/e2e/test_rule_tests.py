"""`rollguard test`: offline rule unit tests, through the real binary and its real CLI.

Every test writes rule files and a test file into a tmp folder and runs `rollguard test`
on it from `/`, so relative paths must resolve against the test file. The simulations are
exact (simulated time, no clock): a grade asserted one second too early must fail, so
most tests assert both sides of each boundary.

Beyond the spec's grade and action assertions, a test can record what an operator or a
deploy script does (`deployed`, `pause`, `resume`) and assert the notifications the
config's notifiers would send (`notifications T = NOTIFIER:KIND ...`; docs/rule-tests.md).
"""

import re
import textwrap

import pytest

import harness
from harness import run_cli

# An http probe every 10s. Its URL is never contacted: `rollguard test` has no network.
API_PROBE = """
    [probe api]
    type     = http
    url      = http://127.0.0.1:9/health
    interval = 10s
    timeout  = 5s
"""

# The spec's example, with the error ratio read from the health endpoint's JSON body.
API_RULES = API_PROBE + """
    [rule api]
    failure     = not api for 30s
    critical    = api.json.errors > 10% for 5m
    warning     = api.json.errors > 5% or api.latency > 3s
    good        = api.json.errors > 1% or api.latency > 200ms
    recover     = 2m
    on_critical = rollback_api
    on_failure  = rollback_api

    [action rollback_api]
    type     = exec
    command  = /bin/false
    cooldown = 10m
"""


def write(folder, name, text):
    """Writes `text` with every line's indentation removed, so that pieces indented
    differently in this file can be joined (these files use no continuation lines)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line.strip() for line in text.strip("\n").splitlines()) + "\n")
    return path


def rule_test(*files):
    return run_cli("test", *files)


def closing_line(result):
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{result.stderr}"
    return lines[-1]


def assert_passes(result, count=1):
    assert result.returncode == 0, (f"expected exit 0, got {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    assert closing_line(result) == f"{count} passed, 0 failed", result.stdout


def assert_fails(result, passed=0, failed=1):
    assert result.returncode == 1, (f"expected exit 1, got {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    assert closing_line(result) == f"{passed} passed, {failed} failed", result.stdout


def assert_malformed(result, file_name, line, *mentions):
    """Exit 2 and an error naming file_name:line that mentions every one of `mentions`."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, (f"expected exit 2 (malformed test file), got "
                                    f"{result.returncode}\noutput:\n{output}")
    pattern = re.compile(r"(^|[\s/])" + re.escape(file_name) + ":" + str(line) + r"\b")
    lines = [text for text in output.splitlines() if pattern.search(text)]
    assert lines, f"expected an error naming {file_name}:{line}, output was:\n{output}"
    for mention in mentions:
        assert mention in lines[0], f"expected the error to mention {mention!r}: {lines[0]}"
    return lines[0]


def line_of(path, text):
    """1-based number of the one line of `path` that is `text` (or, failing that, the one
    line that contains it)."""
    lines = path.read_text().splitlines()
    numbers = [n for n, line in enumerate(lines, start=1) if line.strip() == text.strip()]
    if not numbers:
        numbers = [n for n, line in enumerate(lines, start=1) if text in line]
    assert len(numbers) == 1, f"{text!r} occurs on lines {numbers} of {path}"
    return numbers[0]


# --------------------------------------------------------------------------------------
# The spec's example, and grade timing


def test_spec_example_passes(tmp_path):
    write(tmp_path, "rules.d/api.rules", API_RULES)
    tests = write(tmp_path, "tests/api_test.ini", """
        [test api_rolls_back_once]
        rules  = ../rules.d/api.rules   ; relative to this file
        at 0s   = api.up=1 api.latency=50ms api.json.errors=0.2%
        at 30s  = api.json.errors=20%
        at 40m  = api=silent
        grade 10s   = api:excellent
        grade 30s   = api:warning
        grade 5m20s = api:warning
        grade 5m40s = api:critical
        actions 5m20s =
        actions 6m  = rollback_api:executed
        ; silent: the rule holds critical (stale) and never acts on missing data
        grade 50m   = api:critical
        actions 50m = rollback_api:executed
    """)
    result = rule_test(tests)
    assert_passes(result)
    assert "PASS api_rolls_back_once" in result.stdout


def test_for_fires_exactly_when_the_condition_has_held_long_enough(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "api_test.ini", """
        [test critical_after_five_minutes_of_errors]
        rules = api.rules
        at 0s  = api.up=1 api.latency=50ms api.json.errors=0%
        at 30s = api.json.errors=20%
        grade 29s   = api:excellent
        grade 30s   = api:warning
        grade 5m29s = api:warning
        grade 5m30s = api:critical
        actions 5m29s =
        actions 5m30s = rollback_api:executed

        [test a_false_evaluation_restarts_the_count]
        rules = api.rules
        at 0s  = api.up=1 api.latency=50ms api.json.errors=20%
        at 4m  = api.json.errors=0%
        at 4m10s = api.json.errors=20%
        grade 4m10s = api:warning
        grade 9m9s  = api:warning
        grade 9m10s = api:critical
    """)
    assert_passes(rule_test(tests), count=2)


def test_time_alone_changes_the_grade_at_the_moment_the_daemon_evaluates(tmp_path):
    # The daemon evaluates a rule when its outcome says time alone may change it, not only
    # at probe results and its one-second sweep (docs/rule-tests.md): with a probe every
    # 10s, each change below falls between two results and off every whole second.
    write(tmp_path, "api.rules", API_PROBE + """
        [rule api]
        critical    = api.status >= 500 for 300ms
        on_critical = rollback

        [rule latency]
        critical = api.latency > 3s
        recover  = 2500ms

        [probe worker]
        type     = tcp
        address  = 127.0.0.1:9
        interval = 5s
        timeout  = 1s

        [rule worker]
        critical = not worker
        no_data  = critical

        [action rollback]
        type     = exec
        command  = /bin/true
        cooldown = 0s
    """)
    tests = write(tmp_path, "deadline_test.ini", """
        [test for_elapses_between_results]
        rules = api.rules
        at 0s = api.status=503
        grade 299ms   = api:excellent
        grade 300ms   = api:critical
        actions 299ms =
        actions 300ms = rollback:executed

        [test recover_elapses_between_results]
        rules = api.rules
        at 0s  = api.status=200 api.latency=4s
        at 10s = api.latency=100ms
        grade 12499ms = latency:critical
        grade 12500ms = latency:excellent

        [test a_silent_probe_goes_stale_one_millisecond_after_twice_its_interval]
        rules = api.rules
        at 0s = worker=1
        at 1m = worker=silent
        ; last report at 55s: fresh through 1m5s
        grade 1m5s    = worker:excellent
        grade 1m5s1ms = worker:critical
    """)
    assert_passes(rule_test(tests), count=3)

    # A failing test's timeline shows the change at its moment.
    wrong = write(tmp_path, "wrong_test.ini", """
        [test wrong]
        rules = api.rules
        at 0s = api.status=503
        grade 1s = api:warning
    """)
    result = rule_test(wrong)
    assert_fails(result)
    assert re.search(r"^\s+300ms  api: excellent -> critical", result.stdout, re.M), result.stdout
    assert re.search(r"^\s+300ms  action rollback:executed", result.stdout, re.M), result.stdout


def test_a_for_that_elapses_as_a_result_arrives_is_taken(tmp_path):
    # A probe run due at 1s reports after 1s; the rule's deadline, when its `for` has held
    # for 1s on the 503 of 0s, is at 1s exactly. The daemon evaluates the rule then, before
    # the healthy result arrives, so the action runs.
    rules = (action_rules().replace("interval = 10s", "interval = 1s")
             .replace("timeout  = 5s", "timeout  = 500ms")
             .replace("critical    = api.status >= 500", "critical    = api.status >= 500 for 1s"))
    write(tmp_path, "api.rules", rules)
    tests = write(tmp_path, "edge_test.ini", """
        [test held_for_exactly_its_for]
        rules = api.rules
        at 0s = api.status=503
        at 1s = api.status=200
        grade 1s   = api:excellent
        actions 1s = rollback:executed
    """)
    assert_passes(rule_test(tests))


def test_recover_steps_down_through_each_grade(tmp_path):
    # docs/rules.md's recover table, second by second at its edges.
    write(tmp_path, "latency.rules", API_PROBE + """
        [rule api]
        critical = api.latency > 3s
        warning  = api.latency > 1s
        recover  = 20s
    """)
    tests = write(tmp_path, "latency_test.ini", """
        [test recover_holds_the_worse_grade]
        rules = latency.rules
        at 0s  = api.latency=4s
        at 10s = api.latency=2s
        at 20s = api.latency=100ms
        grade 0s  = api:critical
        grade 29s = api:critical
        grade 30s = api:warning
        grade 39s = api:warning
        grade 40s = api:excellent

        [test worsening_is_immediate]
        rules = latency.rules
        at 0s  = api.latency=100ms
        at 10s = api.latency=3500ms
        grade 9s  = api:excellent
        grade 10s = api:critical
    """)
    assert_passes(rule_test(tests), count=2)


def test_down_probe_is_a_failure_after_its_for(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "api_test.ini", """
        [test down_for_30s_is_failure]
        rules = api.rules
        at 0s  = api.up=1 api.latency=50ms api.json.errors=0%
        at 1m  = api=down
        grade 1m    = api:excellent
        grade 1m29s = api:excellent
        grade 1m30s = api:failure
        actions 1m30s = rollback_api:executed

        [test back_up_recovers_after_recover]
        rules = api.rules
        at 0s  = api=down
        at 1m  = api=1 api.latency=50ms api.json.errors=0%
        grade 30s   = api:failure
        grade 2m59s = api:failure
        grade 3m    = api:excellent
        actions 5m  = rollback_api:executed
    """)
    assert_passes(rule_test(tests), count=2)


def test_silent_probe_holds_the_grade_and_no_data_grades_it(tmp_path):
    write(tmp_path, "api.rules", API_PROBE + """
        [rule api]
        critical    = api.json.errors > 10%
        on_critical = rollback

        [probe worker]
        type     = tcp
        address  = 127.0.0.1:9
        interval = 5s
        timeout  = 1s

        [rule worker]
        critical    = not worker
        no_data     = critical
        on_critical = rollback

        [action rollback]
        type     = exec
        command  = /bin/true
        cooldown = 0s
    """)
    tests = write(tmp_path, "silent_test.ini", """
        [test stale_rule_holds_its_last_grade]
        rules = api.rules
        at 0s  = api.json.errors=50% worker=1
        at 1m  = api=silent
        ; last report at 50s; stale (and held) after 2 x 10s
        grade 1m  = api:critical
        grade 10m = api:critical
        actions 10m = rollback:executed

        [test a_probe_that_never_reported_is_not_excellent_evidence]
        rules = api.rules
        at 0s = worker=1
        ; api never reports: it stays at its starting grade, stale, and never acts
        grade 5m = api:excellent worker:excellent
        actions 5m =

        [test no_data_grades_a_silent_rule_but_runs_nothing]
        rules = api.rules
        at 0s = api.json.errors=0% worker=1
        at 1m = worker=silent
        ; last report at 55s: fresh through 1m5s, stale from 1m6s
        grade 1m5s = worker:excellent
        grade 1m6s = worker:critical
        actions 5m =
    """)
    assert_passes(rule_test(tests), count=3)


# --------------------------------------------------------------------------------------
# Action decisions


def action_rules(cooldown="0s", dry_run=False, breaker=None):
    return API_PROBE + f"""
        [rule api]
        critical    = api.status >= 500
        on_critical = rollback

        [action rollback]
        type     = exec
        command  = /bin/true
        cooldown = {cooldown}
        {"dry_run  = true" if dry_run else ""}
        {f"breaker  = {breaker}" if breaker else ""}
    """


# The rule enters critical at 0s, 1m, 2m, 3m, 4m (healthy for 30s in between).
FLAPPING = """
    at 0s   = api.status=503
    at 30s  = api.status=200
    at 1m   = api.status=503
    at 1m30s = api.status=200
    at 2m   = api.status=503
    at 2m30s = api.status=200
    at 3m   = api.status=503
    at 3m30s = api.status=200
    at 4m   = api.status=503
"""


def test_executed_then_suppressed_cooldown(tmp_path):
    write(tmp_path, "api.rules", action_rules(cooldown="2m30s"))
    tests = write(tmp_path, "cooldown_test.ini", "[test cooldown]\nrules = api.rules\n" +
                  textwrap.dedent(FLAPPING) + """
        actions 0s = rollback:executed
        actions 2m = rollback:executed rollback:suppressed_cooldown rollback:suppressed_cooldown
        actions 4m = rollback:executed rollback:suppressed_cooldown rollback:suppressed_cooldown rollback:executed rollback:suppressed_cooldown
    """)
    assert_passes(rule_test(tests))


def test_default_breaker_opens_at_the_third_action(tmp_path):
    write(tmp_path, "api.rules", action_rules())
    tests = write(tmp_path, "breaker_test.ini", "[test default_breaker]\nrules = api.rules\n" +
                  textwrap.dedent(FLAPPING) + """
        actions 4m = rollback:executed rollback:executed rollback:executed rollback:suppressed_breaker rollback:suppressed_breaker
    """)
    assert_passes(rule_test(tests))


def test_config_breakers_apply(tmp_path):
    # Without `config` the default breaker (3 per hour) would admit three rollbacks.
    write(tmp_path, "rules.d/default.rules", action_rules())
    write(tmp_path, "rules.d/tight.rules", action_rules(breaker="tight"))
    write(tmp_path, "rollguard.conf", """
        [daemon]
        include = rules.d/*.rules

        [breaker]
        max_actions = 2
        window      = 1h
        cooldown    = 30m

        [breaker tight]
        max_actions = 1
        window      = 1h
        cooldown    = 30m
    """)
    tests = write(tmp_path, "tests/breaker_test.ini",
                  "[test config_default_breaker]\n"
                  "rules  = ../rules.d/default.rules\nconfig = ../rollguard.conf\n" +
                  textwrap.dedent(FLAPPING) +
                  "actions 4m = rollback:executed rollback:executed rollback:suppressed_breaker "
                  "rollback:suppressed_breaker rollback:suppressed_breaker\n\n"
                  "[test config_named_breaker]\n"
                  "rules  = ../rules.d/tight.rules\nconfig = ../rollguard.conf\n" +
                  textwrap.dedent(FLAPPING) +
                  "actions 4m = rollback:executed rollback:suppressed_breaker "
                  "rollback:suppressed_breaker rollback:suppressed_breaker "
                  "rollback:suppressed_breaker\n")
    assert_passes(rule_test(tests), count=2)


def test_config_includes_are_not_followed(tmp_path):
    # The config's include glob matches a rule file that would clash with the test's own
    # (a duplicate probe): loading it would fail the test.
    write(tmp_path, "rules.d/api.rules", action_rules())
    write(tmp_path, "rollguard.conf", "[daemon]\ninclude = rules.d/*.rules\n")
    tests = write(tmp_path, "api_test.ini", """
        [test config_without_its_includes]
        rules  = rules.d/api.rules
        config = rollguard.conf
        at 0s  = api.status=503
        actions 1s = rollback:executed
    """)
    assert_passes(rule_test(tests))


def test_dry_run_action_and_dry_run_config(tmp_path):
    write(tmp_path, "shadow.rules", action_rules(dry_run=True))
    write(tmp_path, "live.rules", action_rules())
    write(tmp_path, "shadow.conf", "[daemon]\ndry_run = true\n")
    tests = write(tmp_path, "dry_run_test.ini", """
        [test action_in_shadow_mode]
        rules = shadow.rules
        at 0s = api.status=503
        actions 10s = rollback:dry_run

        [test config_in_shadow_mode]
        rules  = live.rules
        config = shadow.conf
        at 0s = api.status=503
        actions 10s = rollback:dry_run

        [test live]
        rules = live.rules
        at 0s = api.status=503
        actions 10s = rollback:executed
    """)
    assert_passes(rule_test(tests), count=3)


def test_dependency_suppresses_actions(tmp_path):
    write(tmp_path, "deps.rules", API_PROBE + """
        [probe db]
        type     = tcp
        address  = 127.0.0.1:9
        interval = 10s
        timeout  = 5s

        [rule db]
        critical = not db

        [rule api]
        critical    = api.status >= 500
        depends     = db
        on_critical = rollback_api

        [action rollback_api]
        type     = exec
        command  = /bin/true
        cooldown = 0s
    """)
    tests = write(tmp_path, "deps_test.ini", """
        [test held_by_db]
        rules = deps.rules
        at 0s  = db=0 api.status=200
        at 30s = api.status=503
        grade 30s = db:critical api:critical
        actions 1m = rollback_api:suppressed_dependency

        [test acts_when_db_is_fine]
        rules = deps.rules
        at 0s  = db=1 api.status=200
        at 30s = api.status=503
        grade 30s = db:excellent api:critical
        actions 1m = rollback_api:executed
    """)
    assert_passes(rule_test(tests), count=2)


def test_armed_action_without_a_deploy_is_suppressed_unarmed(tmp_path):
    # A test records no deploy, so an action with `arm` is never inside a deploy window.
    rules = action_rules().replace("cooldown = 0s", "cooldown = 0s\narm = 30m")
    write(tmp_path, "arm.rules", rules)
    tests = write(tmp_path, "arm_test.ini", """
        [test unarmed]
        rules = arm.rules
        at 0s = api.status=503
        actions 10s = rollback:suppressed_unarmed
    """)
    assert_passes(rule_test(tests))


def test_deployed_arms_an_action_for_its_window(tmp_path):
    rules = action_rules().replace("cooldown = 0s", "cooldown = 0s\narm = 30m").replace(
        "on_critical = rollback", "on_critical = rollback\nlabels = service=api")
    write(tmp_path, "arm.rules", rules)
    tests = write(tmp_path, "arm_test.ini", """
        [test armed_by_a_deploy]
        rules = arm.rules
        deployed 0s = service=api version=v42
        at 1m = api.status=503
        at 2m = api.status=200
        actions 1m = rollback:executed
        ; 30m after the deploy the window has closed.
        at 30m = api.status=503
        actions 31m = rollback:executed rollback:suppressed_unarmed

        [test another_service_does_not_arm_it]
        rules = arm.rules
        deployed 0s = service=web
        at 1m = api.status=503
        actions 2m = rollback:suppressed_unarmed

        [test a_deploy_without_service_arms_every_rule]
        rules = arm.rules
        deployed 0s =
        at 1m = api.status=503
        actions 2m = rollback:executed
    """)
    assert_passes(rule_test(tests), count=3)
    # One second past the window must fail: the assertion can tell.
    late = write(tmp_path, "late_test.ini", """
        [test late]
        rules = arm.rules
        deployed 0s = service=api
        at 30m = api.status=503
        actions 31m = rollback:executed
    """)
    result = rule_test(late)
    assert_fails(result)
    assert "rollback:suppressed_unarmed" in result.stdout, result.stdout


def test_pause_and_resume_in_a_rule_test(tmp_path):
    write(tmp_path, "api.rules", action_rules())
    tests = write(tmp_path, "pause_test.ini", "[test paused]\nrules = api.rules\n" +
                  "pause 0s = 1m30s\n" + textwrap.dedent(FLAPPING) + """
        actions 4m = rollback:suppressed_paused rollback:suppressed_paused rollback:executed rollback:executed rollback:executed

        [test resumed]
        rules = api.rules
        pause 0s = 1h
        resume 1m30s =
    """ + textwrap.dedent(FLAPPING) + """
        actions 2m = rollback:suppressed_paused rollback:suppressed_paused rollback:executed
    """)
    assert_passes(rule_test(tests), count=2)


NOTIFY_CONF = """
    [daemon]
    include = rules.d/*.rules

    [notifier slack]
    type      = slack
    url       = http://127.0.0.1:9/hook
    min_grade = critical

    [notifier pager]
    type      = webhook
    url       = http://127.0.0.1:9/pager
    min_grade = failure
"""


def test_notifications_are_asserted_in_order(tmp_path):
    write(tmp_path, "rules.d/api.rules", action_rules())
    write(tmp_path, "rollguard.conf", NOTIFY_CONF)
    tests = write(tmp_path, "notify_test.ini", """
        [test notified]
        rules  = rules.d/api.rules
        config = rollguard.conf
        at 0s  = api.status=200
        notifications 0s =
        at 1m  = api.status=503
        notifications 59s =
        ; critical reaches slack with the decision in its message; the pager (min_grade
        ; failure) does not hear of the grade, so it hears of the decision on its own, and
        ; both hear the result (docs/notifications.md).
        notifications 1m = slack:grade_changed pager:action_decided slack:action_finished pager:action_finished
        at 2m  = api.status=200
        notifications 2m = slack:grade_changed pager:action_decided slack:action_finished pager:action_finished slack:resolved
    """)
    assert_passes(rule_test(tests))
    wrong = write(tmp_path, "wrong_test.ini", """
        [test wrong]
        rules  = rules.d/api.rules
        config = rollguard.conf
        at 0s  = api.status=503
        notifications 10s = pager:grade_changed
    """)
    result = rule_test(wrong)
    assert_fails(result)
    assert "expected: pager:grade_changed" in result.stdout, result.stdout
    assert "actual:   slack:grade_changed pager:action_decided" in result.stdout, result.stdout
    assert "notify slack:grade_changed" in result.stdout, "the timeline shows notifications"


def test_notifications_name_known_notifiers_and_kinds(tmp_path):
    write(tmp_path, "rules.d/api.rules", action_rules())
    write(tmp_path, "rollguard.conf", NOTIFY_CONF)
    tests = write(tmp_path, "bad_test.ini", """
        [test bad]
        rules  = rules.d/api.rules
        config = rollguard.conf
        at 0s  = api.status=503
        notifications 10s = email:grade_changed
    """)
    assert_malformed(rule_test(tests), "bad_test.ini", 5, "email", "slack, pager")
    tests = write(tmp_path, "kind_test.ini", """
        [test kind]
        rules  = rules.d/api.rules
        config = rollguard.conf
        at 0s  = api.status=503
        notifications 10s = slack:fired
    """)
    assert_malformed(rule_test(tests), "kind_test.ini", 5, "fired", "grade_changed")


# --------------------------------------------------------------------------------------
# Values


def test_quoted_strings_and_json_fields(tmp_path):
    write(tmp_path, "state.rules", API_PROBE + """
        [rule api]
        critical = api.json.state == "degraded mode"
        warning  = api.json.version == "2"
        good     = api.json.state != "ok"
    """)
    tests = write(tmp_path, "state_test.ini", """
        [test strings]
        rules = state.rules
        at 0s  = api.json.state=ok api.json.version="1"
        at 10s = api.json.state="degraded mode"
        at 20s = api.json.state=ok api.json.version="2"
        at 30s = api.json.state="warming \\"up\\"" api.json.version="3"
        grade 0s  = api:excellent
        grade 10s = api:critical
        grade 20s = api:warning
        grade 30s = api:good
    """)
    assert_passes(rule_test(tests))


def test_a_number_is_not_the_string_of_its_digits(tmp_path):
    # json.version=2 (a number) compared with "2" has no answer: the rule does not become
    # warning, and (unknown) it does not improve either.
    write(tmp_path, "state.rules", API_PROBE + """
        [rule api]
        warning = api.json.version == "2"
    """)
    tests = write(tmp_path, "state_test.ini", """
        [test number_versus_string]
        rules = state.rules
        at 0s = api.json.version=2
        grade 30s = api:warning
    """)
    result = rule_test(tests)
    assert_fails(result)
    assert "actual:   api:excellent" in result.stdout, result.stdout


# --------------------------------------------------------------------------------------
# Failures and output


def test_failure_shows_expected_actual_and_the_timeline(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "api_test.ini", """
        [test passes]
        rules = api.rules
        at 0s = api.up=1 api.latency=50ms api.json.errors=0%
        grade 1m = api:excellent

        [test wrong_grade_and_actions]
        rules = api.rules
        at 0s  = api.up=1 api.latency=50ms api.json.errors=0%
        at 30s = api.json.errors=20%
        grade 1m  = api:critical
        actions 6m = rollback_api:suppressed_breaker
    """)
    result = rule_test(tests)
    assert_fails(result, passed=1, failed=1)
    out = result.stdout
    assert "PASS passes" in out, out
    fail = out[out.index("FAIL wrong_grade_and_actions"):]
    grade_line = line_of(tests, "grade 1m  = api:critical")
    actions_line = line_of(tests, "actions 6m")
    assert f"api_test.ini:{grade_line}" in fail, fail
    assert "expected: api:critical" in fail and "actual:   api:warning" in fail, fail
    assert f"api_test.ini:{actions_line}" in fail, fail
    assert "expected: rollback_api:suppressed_breaker" in fail, fail
    assert "actual:   rollback_api:executed" in fail, fail
    # The timeline shows the inputs, each grade change with its time, and the action.
    timeline = fail[fail.index("timeline"):]
    assert re.search(r"30s\s+at: api\.json\.errors=20%", timeline), timeline
    assert re.search(r"30s\s+api: excellent -> warning", timeline), timeline
    assert re.search(r"5m30s\s+api: warning -> critical", timeline), timeline
    assert re.search(r"5m30s\s+action rollback_api:executed", timeline), timeline


def test_several_files_and_sections_count_together(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    first = write(tmp_path, "a_test.ini", """
        [test one]
        rules = api.rules
        at 0s = api=1 api.latency=50ms api.json.errors=0%
        grade 0s = api:excellent

        [test two]
        rules = api.rules
        at 0s = api=1 api.latency=250ms api.json.errors=0%
        grade 0s = api:good
    """)
    second = write(tmp_path, "b_test.ini", """
        [test three]
        rules = api.rules
        at 0s = api=1 api.latency=5s api.json.errors=0%
        grade 0s = api:warning

        [test four_fails]
        rules = api.rules
        at 0s = api=1 api.latency=5s api.json.errors=0%
        grade 0s = api:good
    """)
    assert_passes(rule_test(first), count=2)
    result = rule_test(first, second)
    assert_fails(result, passed=3, failed=1)
    for name in ("PASS one", "PASS two", "PASS three", "FAIL four_fails"):
        assert name in result.stdout, result.stdout


def test_rules_that_do_not_load_fail_the_test(tmp_path):
    write(tmp_path, "broken.rules", API_PROBE + "\n[rule api]\ncritical = api.lat > 3s\n")
    tests = write(tmp_path, "broken_test.ini", """
        [test broken_rules]
        rules = broken.rules
        at 0s = api=1
        grade 0s = api:excellent
    """)
    result = rule_test(tests)
    assert_fails(result)
    assert re.search(r"broken\.rules:\d+:\d+: \[rule api\] critical", result.stdout), result.stdout


# --------------------------------------------------------------------------------------
# Malformed and unreadable test files: exit 2, with file:line


def test_missing_test_file_is_exit_2(tmp_path):
    result = rule_test(tmp_path / "nope.ini")
    assert result.returncode == 2, result
    assert "nope.ini" in result.stdout + result.stderr


def test_no_file_is_a_usage_error():
    result = rule_test()
    assert result.returncode == 2, result
    assert "usage" in (result.stdout + result.stderr).lower()


MALFORMED = [
    # (id, the offending line, what the error must mention)
    ("unknown_key", "grde 10s = api:excellent", ["grde"]),
    ("bad_time", "grade 10 sec = api:excellent", ["grade 10 sec"]),
    ("bad_duration", "at 5x = api=1", ["5x"]),
    ("unknown_probe", "at 0s = apx.latency=1", ["apx"]),
    ("field_the_probe_lacks", "at 0s = api.lat=1", ["lat"]),
    ("not_an_assignment", "at 0s = api", ["api"]),
    ("unterminated_quote", 'at 0s = api.json.s="open', ["closing"]),
    ("malformed_number", "at 0s = api.latency=5q", ["5q"]),
    ("string_for_latency", "at 0s = api.latency=fast", ["latency"]),
    ("unknown_rule", "grade 0s = apx:excellent", ["apx"]),
    ("unknown_grade", "grade 0s = api:excelent", ["excelent"]),
    ("grade_without_colon", "grade 0s = api", ["RULE:GRADE"]),
    ("unknown_action", "actions 0s = rollbak_api:executed", ["rollbak_api"]),
    ("unknown_decision", "actions 0s = rollback_api:done", ["done"]),
    ("missing_rules_file", "rules = nope.rules", ["nope.rules"]),
]


@pytest.mark.parametrize("bad_line,mentions", [(m[1], m[2]) for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_line_is_exit_2_with_file_and_line(tmp_path, bad_line, mentions):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "bad_test.ini", f"""
        [test good_one]
        rules = api.rules
        at 0s = api=1
        grade 0s = api:excellent

        [test bad_one]
        rules = api.rules
        at 0s = api=1
        grade 0s = api:excellent
        {bad_line}
    """)
    result = rule_test(tests)
    assert_malformed(result, "bad_test.ini", line_of(tests, bad_line), *mentions)
    # The well-formed test still ran; the malformed one is neither passed nor failed.
    assert "PASS good_one" in result.stdout, result.stdout
    assert closing_line(result) == "1 passed, 0 failed", result.stdout


def test_section_that_is_not_a_test_is_exit_2(tmp_path):
    tests = write(tmp_path, "bad_test.ini", "[rule api]\ncritical = not api\n")
    assert_malformed(rule_test(tests), "bad_test.ini", 1, "[test NAME]")


def test_test_without_assertions_is_exit_2(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "empty_test.ini", "[test asserts_nothing]\nrules = api.rules\nat 0s = api=1\n")
    assert_malformed(rule_test(tests), "empty_test.ini", 1, "asserts nothing")


def test_duplicate_test_name_is_exit_2(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "dup_test.ini", """
        [test same]
        rules = api.rules
        grade 0s = api:excellent

        [test same]
        rules = api.rules
        grade 0s = api:excellent
    """)
    assert_malformed(rule_test(tests), "dup_test.ini", 5, "dup_test.ini:1")


def test_absurdly_long_simulation_is_refused(tmp_path):
    write(tmp_path, "api.rules", API_RULES)
    tests = write(tmp_path, "long_test.ini", "[test forever]\nrules = api.rules\n"
                  "grade 100000d = api:excellent\n")
    assert_malformed(rule_test(tests), "long_test.ini", 1, "simulated steps")


# --------------------------------------------------------------------------------------
# The examples SREs copy: every examples/**/*_test.ini passes


def example_test_files():
    return sorted((harness.source_dir() / "examples").rglob("*_test.ini"))


def test_rule_examples_have_tests():
    folders = {path.parent.name for path in example_test_files()}
    assert {"api_health", "dependencies", "feature_flag", "promql_slo"} <= folders, folders


@pytest.mark.parametrize("test_file", example_test_files(), ids=lambda p: p.parent.name + "/" + p.name)
def test_example_rule_tests_pass(test_file):
    result = rule_test(test_file)
    assert result.returncode == 0, (f"{test_file}: exit {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    passed = int(re.match(r"(\d+) passed, 0 failed$", closing_line(result)).group(1))
    sections = len(re.findall(r"^\[test ", test_file.read_text(), flags=re.M))
    assert passed == sections, f"{passed} passed, but {test_file} has {sections} tests"


# --------------------------------------------------------------------------------------
# PromQL probes: the spec's example as written there


def test_spec_example_with_promql_passes(tmp_path):
    write(tmp_path, "rollguard.conf", """
        [daemon]
        include = rules.d/*.rules

        [prometheus]
        url = http://127.0.0.1:9
    """)
    write(tmp_path, "rules.d/api.rules", API_PROBE + """
        [probe api_errors]
        type     = promql
        query    = sum(rate(http_requests_total{job="api",code=~"5.."}[5m])) / sum(rate(http_requests_total{job="api"}[5m]))
        interval = 10s
        timeout  = 5s

        [rule api]
        failure     = not api for 30s
        critical    = api_errors > 10% for 5m
        warning     = api_errors > 5% or api.latency > 3s
        good        = api_errors > 1% or api.latency > 200ms
        recover     = 2m
        on_critical = rollback_api
        on_failure  = rollback_api

        [action rollback_api]
        type     = exec
        command  = /bin/false
        cooldown = 10m
    """)
    tests = write(tmp_path, "tests/api_test.ini", """
        [test api_rolls_back_once]
        rules  = ../rules.d/api.rules   ; relative to this file; repeatable
        config = ../rollguard.conf      ; its [prometheus] server serves the promql probe
        at 0s   = api.up=1 api.latency=50ms api_errors=0.2%
        at 30s  = api_errors=20%
        at 40m  = api=silent
        grade 10s   = api:excellent
        grade 5m20s = api:warning
        grade 5m40s = api:critical
        actions 6m  = rollback_api:executed

    """)
    assert_passes(rule_test(tests))


def test_absent_field_is_unknown_never_fine(tmp_path):
    # An empty PromQL vector has no value: the rule neither improves on it nor acts on it.
    write(tmp_path, "rollguard.conf", "[prometheus]\nurl = http://127.0.0.1:9\n")
    write(tmp_path, "errors.rules", """
        [probe errors]
        type     = promql
        query    = sum(rate(http_requests_total{code=~"5.."}[5m]))
        interval = 10s
        timeout  = 5s

        [rule errors]
        critical = errors > 10%
        good     = absent(errors)
    """)
    tests = write(tmp_path, "errors_test.ini", """
        [test empty_vector_holds_the_grade]
        rules  = errors.rules
        config = rollguard.conf
        at 0s  = errors=20%
        at 1m  = errors.value=absent errors.count=0
        grade 59s = errors:critical
        grade 10m = errors:critical
        at 11m = errors=1% errors.count=1
        grade 11m = errors:excellent

        [test absent_from_the_start]
        rules  = errors.rules
        config = rollguard.conf
        at 0s  = errors=absent errors.count=0
        grade 0s = errors:good
    """)
    assert_passes(rule_test(tests), count=2)
    write(tmp_path, "bad_test.ini", """
        [test latency_cannot_be_absent]
        rules  = errors.rules
        config = rollguard.conf
        at 0s  = errors.latency=absent
        grade 0s = errors:excellent
    """)
    assert_malformed(rule_test(tmp_path / "bad_test.ini"), "bad_test.ini", 4, "absent")
