"""`rollguard check` on the rule language: every error class names file:line (and column
with a caret inside an expression), warnings do not fail the check, exit codes follow the
spec (0 ok, 1 check failed, 2 unreadable input).

Each broken rule file differs from a valid one in one line, so a failure here means that
exact mistake was not reported where the user would look for it. The example configs in
examples/rules/ must pass without a single warning: they are what SREs copy.
"""

import re
import textwrap

import pytest

import harness
from harness import run_cli

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = off
    state_dir = state
"""

PROBES = textwrap.dedent("""
    [probe api]
    type          = http
    url           = http://127.0.0.1:9/health
    interval      = 10s
    timeout       = 5s

    [probe db]
    type     = tcp
    address  = 127.0.0.1:9
    interval = 10s
    timeout  = 5s
""")

RULES = PROBES + textwrap.dedent("""
    [rule db]
    failure = not db for 30s

    [rule api]
    failure  = not api for 30s
    critical = api.status >= 500 for 1m
    warning  = p95(api.latency, 5m) > 2s
    good     = api.json.state != "ok"
    depends  = db
""")


def write_config(tmp_path, rules, main=MAIN, name="api.rules"):
    root = tmp_path / "conf"
    (root / "rules.d").mkdir(parents=True, exist_ok=True)
    (root / "rollguard.conf").write_text(textwrap.dedent(main).lstrip("\n"))
    path = root / "rules.d" / name
    path.write_text(textwrap.dedent(rules).lstrip("\n"))
    return root / "rollguard.conf", path


def with_line(old, new, text=RULES):
    """`text` with the one line containing `old` replaced by `new` (indentation kept)."""
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if old in line]
    assert len(hits) == 1, (old, hits)
    indent = lines[hits[0]][:len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines[hits[0]] = "\n".join(indent + part for part in new.split("\n"))
    return "\n".join(lines)


def check(config):
    return run_cli("check", "--config", config)


def line_of(path, text):
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    assert len(numbers) == 1, f"{text!r} occurs on lines {numbers} of {path}"
    return numbers[0]


def assert_check_fails(result):
    assert result.returncode == 1, (f"expected exit 1 (check failed), got {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")


def error_lines(result, file_name, line):
    """The stderr lines from the one naming file_name:line[:column] onwards."""
    lines = result.stderr.splitlines()
    pattern = re.compile(r"(^|[\s/])" + re.escape(file_name) + ":" + str(line) + r"(:\d+)?:")
    for index, text in enumerate(lines):
        if pattern.search(text):
            return lines[index:]
    raise AssertionError(f"expected an error naming {file_name}:{line}, stderr was:\n"
                         f"{result.stderr}")


def assert_expression_error(tmp_path, key, value, offending, *mentions):
    """Checks a rule whose `key = value` line is wrong at the text `offending`.

    The error must be file:line:column with the column of `offending` (counted as if the
    line were written `key = value`), and be followed by the expression and a caret under
    `offending`; `offending=None` means the end of the expression.
    """
    rules = with_line("critical = api.status >= 500 for 1m", f"{key} = {value}")
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert_check_fails(result)
    line = line_of(path, f"{key} = {value}")
    found = error_lines(result, "api.rules", line)
    header = found[0]
    offset = len(value) if offending is None else value.index(offending)
    column = len(f"{key} = ") + offset + 1
    assert re.search(rf"api\.rules:{line}:{column}: \[rule api\] {re.escape(key)}: ", header), (
        f"expected api.rules:{line}:{column}: [rule api] {key}: ...\ngot: {header}")
    for mention in mentions:
        assert mention in header, f"expected the error to mention {mention!r}: {header}"
    assert len(found) >= 3, f"expected the expression and a caret below the error:\n{found}"
    echo, caret = found[1], found[2]
    assert value in echo, f"expected the expression echoed: {echo!r}"
    assert caret.strip() == "^", f"expected a caret line: {caret!r}"
    caret_at = caret.index("^")
    if offending is None:
        assert caret_at == len(echo.rstrip()), f"expected the caret after the end:\n{echo}\n{caret}"
    else:
        assert echo[caret_at:].startswith(offending), (
            f"caret points at {echo[caret_at:]!r}, expected {offending!r}\n{echo}\n{caret}")
    return header


def test_valid_rules_pass_without_warnings(tmp_path):
    config, _ = write_config(tmp_path, RULES)
    result = check(config)
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert result.stderr == "", result.stderr
    assert "ok" in result.stdout, result.stdout


# --------------------------------------------------------------------------------------
# Errors inside expressions: file:line:column and a caret


def test_syntax_error_has_column_and_caret(tmp_path):
    assert_expression_error(tmp_path, "critical", "api.latency > > 3s", "> 3s", "expected")


def test_unclosed_parenthesis_points_at_the_end(tmp_path):
    assert_expression_error(tmp_path, "critical", "(api.latency > 3s or not api", None,
                            "expected )")


def test_unknown_function_is_named(tmp_path):
    assert_expression_error(tmp_path, "critical", "p96(api.latency, 5m) > 1s", "p96", "p96")


def test_unknown_probe_is_named(tmp_path):
    assert_expression_error(tmp_path, "critical", "apx.status >= 500", "apx", "apx", "api")


def test_field_the_probe_type_lacks_is_named_with_the_fields_it_has(tmp_path):
    header = assert_expression_error(tmp_path, "critical", "api.lat > 3s", "lat", '"lat"',
                                     "http probe api")
    assert "latency" in header, f"expected the http fields to be listed: {header}"


def test_tcp_probe_has_no_status(tmp_path):
    assert_expression_error(tmp_path, "critical", "db.status >= 500", "status", '"status"',
                            "tcp probe db")


def test_string_compared_with_less_than_is_a_type_error(tmp_path):
    assert_expression_error(tmp_path, "critical", 'api.json.state < "ok"', '"ok"', "<",
                            "string")


def test_comparisons_do_not_chain(tmp_path):
    assert_expression_error(tmp_path, "critical", "1 < api.latency < 2", "< 2", "<")


def test_window_function_without_a_window_is_named(tmp_path):
    assert_expression_error(tmp_path, "warning", "avg(api.latency) > 1s", ")", "avg")


def test_for_only_at_the_end_of_a_condition(tmp_path):
    # `for` applies to the whole condition: nothing may follow its duration.
    assert_expression_error(tmp_path, "critical", "api.latency > 1s for 1m or not api", "or not",
                            '"or"')


def test_summary_expression_error_points_into_the_summary(tmp_path):
    rules = RULES + "summary = p95 {{ p95(apx.latency, 5m) | duration }}\n"
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert_check_fails(result)
    line = line_of(path, "summary = ")
    value = "p95 {{ p95(apx.latency, 5m) | duration }}"
    column = len("summary = ") + value.index("apx") + 1
    header = error_lines(result, "api.rules", line)[0]
    assert re.search(rf"api\.rules:{line}:{column}: \[rule api\] summary: .*apx", header), header


# --------------------------------------------------------------------------------------
# Errors about the rule as a whole


def test_dependency_cycle_is_named_with_its_path(tmp_path):
    rules = with_line("failure = not db for 30s", "failure = not db for 30s\ndepends = api")
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert_check_fails(result)
    lines = [line for line in result.stderr.splitlines() if "cycle" in line]
    assert lines, result.stderr
    assert re.search(r"api\.rules:\d+: \[rule (api|db)\] depends: ", lines[0]), lines[0]
    assert re.search(r"(api -> db -> api|db -> api -> db)", lines[0]), lines[0]
    numbers = {line_of(path, "depends = api"), line_of(path, "depends  = db")}
    assert int(re.search(r"api\.rules:(\d+):", lines[0]).group(1)) in numbers, lines[0]


def test_dependency_on_an_unknown_rule_is_named(tmp_path):
    config, path = write_config(tmp_path, with_line("depends  = db", "depends  = dbb"))
    result = check(config)
    assert_check_fails(result)
    header = error_lines(result, "api.rules", line_of(path, "depends  = dbb"))[0]
    assert "dbb" in header, header


def test_unknown_rule_key_is_an_error(tmp_path):
    config, path = write_config(tmp_path, with_line("good     = ", 'gooood = api.json.state != "ok"'))
    result = check(config)
    assert_check_fails(result)
    header = error_lines(result, "api.rules", line_of(path, "gooood"))[0]
    assert "gooood" in header and "[rule api]" in header, header


def test_bad_recover_duration_is_named(tmp_path):
    config, path = write_config(tmp_path, RULES + "recover = 2 minutes\n")
    result = check(config)
    assert_check_fails(result)
    header = error_lines(result, "api.rules", line_of(path, "recover"))[0]
    assert "recover" in header and "duration" in header, header


def test_every_syntax_error_is_reported_in_one_run(tmp_path):
    rules = with_line("failure = not db for 30s", "failure = not db for")
    rules = with_line("warning  = p95(api.latency, 5m) > 2s", "warning = p96(api.latency, 5m) > 2",
                      rules)
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert_check_fails(result)
    error_lines(result, "api.rules", line_of(path, "not db for"))
    error_lines(result, "api.rules", line_of(path, "p96"))


def test_every_reference_error_is_reported_in_one_run(tmp_path):
    rules = with_line("critical = api.status >= 500 for 1m", "critical = api.lat > 1")
    rules = with_line("failure = not db for 30s", "failure = db.status > 1", rules)
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert_check_fails(result)
    error_lines(result, "api.rules", line_of(path, "api.lat > 1"))
    error_lines(result, "api.rules", line_of(path, "db.status"))


# --------------------------------------------------------------------------------------
# Warnings: legal, probably mistakes; the check still passes


def test_probe_no_rule_reads_is_a_warning(tmp_path):
    rules = RULES + textwrap.dedent("""
        [probe cache]
        type     = tcp
        address  = 127.0.0.1:9
        interval = 10s
        timeout  = 5s
    """)
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if "cache" in line]
    assert warnings, f"expected a warning about probe cache:\n{result.stderr}"
    assert warnings[0].startswith("warning: "), warnings[0]
    assert re.search(rf"api\.rules:{line_of(path, '[probe cache]')}\b", warnings[0]), warnings[0]


def test_rule_without_condition_is_a_warning(tmp_path):
    rules = RULES + "\n[rule quiet]\nsummary = {{ api.status }}\n"
    config, path = write_config(tmp_path, rules)
    result = check(config)
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if "quiet" in line]
    assert warnings, f"expected a warning about rule quiet:\n{result.stderr}"
    assert warnings[0].startswith("warning: "), warnings[0]
    assert re.search(rf"api\.rules:{line_of(path, '[rule quiet]')}\b", warnings[0]), warnings[0]
    assert "condition" in warnings[0], warnings[0]


def test_warnings_do_not_hide_errors(tmp_path):
    rules = with_line("critical = api.status >= 500 for 1m", "critical = api.lat > 1")
    rules += "\n[rule quiet]\nlabels = a=b\n"
    config, _ = write_config(tmp_path, rules)
    assert_check_fails(check(config))


# --------------------------------------------------------------------------------------
# Exit codes


def test_unreadable_main_config_is_exit_2(tmp_path):
    result = check(tmp_path / "missing.conf")
    assert result.returncode == 2, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "missing.conf" in result.stderr


# --------------------------------------------------------------------------------------
# The examples SREs copy


def example_configs():
    return sorted((harness.source_dir() / "examples" / "rules").rglob("rollguard.conf"))


def test_rule_examples_exist():
    assert len(example_configs()) >= 3, example_configs()


@pytest.mark.parametrize("config", example_configs(),
                         ids=lambda p: str(p.relative_to(harness.source_dir())))
def test_example_config_passes_check_without_warnings(config):
    result = check(config)
    assert result.returncode == 0, f"{config}: exit {result.returncode}\n{result.stderr}"
    assert result.stderr == "", f"{config}: warnings in an example:\n{result.stderr}"
