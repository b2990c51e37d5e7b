"""`rollguard check`: a valid config passes, every class of mistake is named by file:line.

Each broken config differs from the valid one in a single line, so a failure here means
that exact mistake was not reported where the user would look for it.
"""

import re

import pytest

import harness
from harness import run_cli

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
    socket    = rollguard.sock

    [breaker]
    max_actions = 3
    window      = 30s
    cooldown    = 5s
"""

# One line per entry so a test can swap exactly one of them.
API_RULES = [
    "[probe api]",
    "type          = http",
    "url           = {url}",
    "interval      = 200ms",
    "timeout       = 150ms",
    "expect_status = 200-599",
    "",
    "[rule api]",
    "failure     = not api for 1s",
    "critical    = api.status >= 500",
    "warning     = api.latency > 300ms",
    "good        = api.json.errors > 1%",
    "on_critical = rollback",
    "on_failure  = rollback",
    "",
    "[action rollback]",
    "type     = exec",
    "command  = {rollback}",
    "timeout  = 10s",
    "cooldown = 0s",
]


def rules_with(replace=None, append=()):
    """API_RULES with `replace` {old line: new line} applied and `append` lines added."""
    lines = list(API_RULES)
    for old, new in (replace or {}).items():
        assert old in lines, old
        lines[lines.index(old)] = new
    return "\n".join(lines + list(append)) + "\n"


def line_of(path, text):
    """1-based number of the only line of `path` that contains `text`."""
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    assert len(numbers) == 1, f"{text!r} occurs on lines {numbers} of {path}"
    return numbers[0]


def check(config):
    return run_cli("check", "--config", config.main)


def error_line(result, file_name, line):
    """The stderr line that names `file_name:line` (the file may be given with a folder)."""
    pattern = re.compile(r"(^|[\s/])" + re.escape(file_name) + ":" + str(line) + r"\b")
    for text in result.stderr.splitlines():
        if pattern.search(text):
            return text
    raise AssertionError(f"expected an error naming {file_name}:{line}, stderr was:\n"
                         f"{result.stderr}")


def assert_rejected(config, file_name, line, *mentions):
    result = check(config)
    assert result.returncode == 1, (
        f"expected exit 1 (check failed), got {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    text = error_line(result, file_name, line)
    for mention in mentions:
        assert mention.lower() in text.lower(), (
            f"expected the error to mention {mention!r}: {text}")
    return text


def test_valid_config_passes(make_config):
    config = make_config(MAIN, {"api.rules": rules_with()})
    result = check(config)
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "error" not in result.stderr.lower(), result.stderr
    assert not (config.root / "state").exists(), "check must not create the state_dir"


def test_bad_duration_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"interval      = 200ms": "interval      = 5 sec"})})
    line = line_of(config.rule_files["api.rules"], "interval")
    assert_rejected(config, "api.rules", line, "interval", "duration")


def test_bad_duration_in_main_config_is_named(make_config):
    config = make_config(MAIN.replace("window      = 30s", "window      = 30"),
                         {"api.rules": rules_with()})
    line = line_of(config.main, "window")
    assert_rejected(config, "rollguard.conf", line, "window")


def test_unknown_key_is_an_error_not_ignored(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"interval      = 200ms": "intervall     = 200ms"})})
    line = line_of(config.rule_files["api.rules"], "intervall")
    assert_rejected(config, "api.rules", line, "intervall")


def test_rule_reading_an_unknown_probe_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"critical    = api.status >= 500": "critical    = apii.status >= 500"})})
    line = line_of(config.rule_files["api.rules"], "apii")
    assert_rejected(config, "api.rules", line, "apii")


def test_rule_naming_an_unknown_action_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"on_critical = rollback": "on_critical = rolback"})})
    line = line_of(config.rule_files["api.rules"], "rolback")
    assert_rejected(config, "api.rules", line, "rolback")


def test_condition_syntax_error_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"critical    = api.status >= 500": "critical    = api.status >= (500"})})
    line = line_of(config.rule_files["api.rules"], "(500")
    assert_rejected(config, "api.rules", line, "critical")


def test_timeout_not_below_interval_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"timeout       = 150ms": "timeout       = 200ms"})})
    path = config.rule_files["api.rules"]
    result = check(config)
    assert result.returncode == 1, f"exit {result.returncode}, stderr:\n{result.stderr}"
    # The mistake is the pair; pointing at either key's line is fine.
    lines = [line_of(path, "timeout       ="), line_of(path, "interval      =")]
    texts = []
    for line in lines:
        try:
            texts.append(error_line(result, "api.rules", line))
        except AssertionError:
            pass
    assert texts, f"expected an error at api.rules:{lines[0]} or :{lines[1]}, got:\n{result.stderr}"
    assert "timeout" in texts[0].lower() and "interval" in texts[0].lower(), texts[0]


def test_duplicate_name_across_two_files_names_both(make_config):
    duplicate = "\n".join(["[probe api]", "type     = http", "url      = {url}",
                           "interval = 1s", "timeout  = 500ms"]) + "\n"
    config = make_config(MAIN, {"api.rules": rules_with(), "other.rules": duplicate})
    result = check(config)
    assert result.returncode == 1, f"exit {result.returncode}, stderr:\n{result.stderr}"
    # Files load in sorted order, so the second definition is other.rules:1; the message
    # must also say where the first one is.
    text = error_line(result, "other.rules", 1)
    assert "api" in text, text
    assert re.search(r"api\.rules:1\b", text), f"expected the first definition api.rules:1: {text}"


def test_line_without_equals_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(
        {"interval      = 200ms": "interval 200ms"})})
    line = line_of(config.rule_files["api.rules"], "interval 200ms")
    assert_rejected(config, "api.rules", line)


def test_missing_main_config_is_a_usage_error(tmp_path):
    result = run_cli("check", "--config", tmp_path / "nope.conf")
    assert result.returncode == 2, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "nope.conf" in result.stderr


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["check", "--no-such-flag"]],
                         ids=["no-command", "unknown-command", "unknown-flag"])
def test_usage_errors_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "usage" in (result.stderr + result.stdout).lower()


def example_configs():
    return sorted((harness.source_dir() / "examples").rglob("*.conf"))


def test_examples_exist():
    assert example_configs(), "examples/ holds no *.conf to check"


@pytest.mark.parametrize("config", example_configs(),
                         ids=lambda p: str(p.relative_to(harness.source_dir())))
def test_every_example_passes_check(config):
    result = run_cli("check", "--config", config)
    assert result.returncode == 0, f"{config}: exit {result.returncode}\n{result.stderr}"


FLEET_BREAKER = """
    [breaker fleet]
    scope       = fleet
    redis       = 127.0.0.1:6399
    max_actions = 3
"""


def test_fleet_breaker_and_fleet_action_pass(make_config):
    config = make_config(MAIN + FLEET_BREAKER, {"api.rules": rules_with(
        {"cooldown = 0s": "cooldown = 0s"}, append=["breaker  = fleet", "scope    = fleet"])})
    result = check(config)
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"


def test_fleet_action_on_a_local_breaker_is_named(make_config):
    config = make_config(MAIN, {"api.rules": rules_with(append=["scope    = fleet"])})
    line = line_of(config.rule_files["api.rules"], "[action rollback]")
    assert_rejected(config, "api.rules", line, "scope", "fleet", "breaker")


def test_fleet_breaker_without_redis_is_named(make_config):
    config = make_config(MAIN + FLEET_BREAKER.replace("    redis       = 127.0.0.1:6399\n", ""),
                         {"api.rules": rules_with()})
    line = line_of(config.main, "[breaker fleet]")
    assert_rejected(config, "rollguard.conf", line, "redis")


def test_redis_keys_on_a_local_breaker_are_named(make_config):
    config = make_config(MAIN + FLEET_BREAKER.replace("scope       = fleet", "scope       = local"),
                         {"api.rules": rules_with()})
    line = line_of(config.main, "redis       =")
    assert_rejected(config, "rollguard.conf", line, "redis", "scope = fleet")


def test_bad_redis_address_is_named(make_config):
    config = make_config(MAIN + FLEET_BREAKER.replace("127.0.0.1:6399", "127.0.0.1"),
                         {"api.rules": rules_with()})
    line = line_of(config.main, "redis       =")
    assert_rejected(config, "rollguard.conf", line, "redis", "host:port")
