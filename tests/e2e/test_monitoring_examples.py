"""examples/monitoring: the scrape config, alert rules and Grafana dashboard SREs copy.

promtool checks the scrape config and the rules and runs the rules' unit tests. Then a
real rollguard is scraped by a real Prometheus started from the example scrape config
(on loopback, scraping every second), and every query the alert rules and the dashboard
hold must parse in that Prometheus, and every series they select, every label value they
match and every label they group by or print must exist in what rollguard serves. A
metric or label renamed in the daemon therefore fails here instead of leaving an empty
panel or an alert that can never fire.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

import harness
from harness import LOOPBACK, wait_until

EXAMPLES = harness.source_dir() / "examples" / "monitoring"
SCRAPE_CONFIG = EXAMPLES / "prometheus.yml"
ALERT_RULES = EXAMPLES / "rollguard.rules.yml"
ALERT_TESTS = EXAMPLES / "rollguard.rules.test.yml"
DASHBOARD = EXAMPLES / "grafana-dashboard.json"

WAIT = 20


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/install-deps installs Debian's prometheus")
    return path


def promtool(*args, cwd=EXAMPLES):
    return subprocess.run([tool("promtool"), *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


# --------------------------------------------------------------------------------------
# promtool


def test_the_scrape_config_and_the_alert_rules_pass_promtool_check():
    config = promtool("check", "config", SCRAPE_CONFIG)
    assert config.returncode == 0, config.stdout + config.stderr
    # The rule file the scrape config names is found and checked with it.
    assert "1 rule files found" in config.stdout + config.stderr, config.stdout + config.stderr
    rules = promtool("check", "rules", ALERT_RULES)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_alert_rules_pass_their_unit_tests_and_those_catch_a_changed_rule(tmp_path):
    result = promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout + result.stderr

    # The same tests against a rule that pages on warning too: they must fail.
    text = ALERT_RULES.read_text()
    assert "expr: rollguard_rule_grade >= 3" in text
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    (tmp_path / ALERT_RULES.name).write_text(
        text.replace("expr: rollguard_rule_grade >= 3", "expr: rollguard_rule_grade >= 2"))
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "RollguardRuleCriticalForLong" in result.stdout + result.stderr


# --------------------------------------------------------------------------------------
# The dashboard, as Grafana imports it

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels(board):
    """Every panel, rows' nested panels included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_the_dashboard_is_importable_and_follows_its_datasource_variable():
    board = dashboard()
    # An import with id null creates the dashboard; a fixed uid updates it on re-import.
    assert board["id"] is None
    assert board["uid"] == "rollguard" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Nothing names a datasource of the machine it was exported from: every panel, query,
    # query variable and annotation follows the variable, so it imports anywhere.
    queries = [p for p in panels(board) if p["type"] != "row"]
    assert queries, "the dashboard has no panels"
    for panel in queries:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    for annotation in board["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == DATASOURCE, annotation["name"]
    # Grafana lays panels on a 24-column grid; ids must be unique.
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), ids
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    # What the task asks of it: grades, probe latency, actions, breakers.
    exprs = " ".join(t["expr"] for p in queries for t in p["targets"])
    for metric in ("rollguard_rule_grade", "rollguard_probe_duration_seconds_bucket",
                   "rollguard_actions_total", "rollguard_breaker_open",
                   "rollguard_breaker_admitted"):
        assert metric in exprs, f"no panel shows {metric}"


# --------------------------------------------------------------------------------------
# Every query against a real rollguard scraped by a real Prometheus

MAIN = """
    [daemon]
    include   = rules.d/*.rules
    listen    = 127.0.0.1:0
    state_dir = state
    socket    = rollguard.sock

    [breaker api]
    max_actions = 2
    window      = 1h
    cooldown    = 30m

    ; Never called while the target is healthy: grades stay excellent.
    [notifier team]
    type = webhook
    url  = http://127.0.0.1:9/alerts
"""

RULES = """
    [probe api]
    type          = http
    url           = {url}
    interval      = 500ms
    timeout       = 400ms

    [rule api]
    critical    = api.status >= 500
    on_critical = rollback

    [action rollback]
    type    = exec
    command = /bin/true
    breaker = api
"""

SERVING = re.compile(r"serving /metrics, /healthz, /api/v1/status on http://127\.0\.0\.1:(\d+)")

# Grafana's variables, as a user viewing "All" instances would have them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5s", "$__interval": "1s", "$__range": "1m",
    "$job": "rollguard", "$instance": ".*", "$rule": ".*",
}
# Labels Prometheus adds to every scraped series (the scrape config's target labels).
TARGET_LABELS = {"job", "instance"}


def bound_port(daemon):
    def found():
        daemon.assert_running()
        match = SERVING.search(daemon.log())
        return int(match.group(1)) if match else None
    return wait_until(found, WAIT, "the daemon to log the address it serves on")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def example_scrape_config(rollguard_port):
    """examples/monitoring/prometheus.yml, pointed at the daemon under test and sped up."""
    text = SCRAPE_CONFIG.read_text()
    for old, new in (('"127.0.0.1:9847"', f'"127.0.0.1:{rollguard_port}"'),
                     ("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ("scrape_timeout: 5s", "scrape_timeout: 900ms"),
                     ("- rollguard.rules.yml", f"- {ALERT_RULES}")):
        assert old in text, f"{SCRAPE_CONFIG} no longer holds {old}; update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def prometheus(tmp_path):
    """start(rollguard_port) -> base URL of a Prometheus run from the example config."""
    binary = tool("prometheus")
    processes = []
    folder = tmp_path / "prometheus"

    def start(rollguard_port):
        folder.mkdir()
        (folder / "prometheus.yml").write_text(example_scrape_config(rollguard_port))
        log = open(folder / "prometheus.log", "wb")
        for _ in range(3):  # another process may take the free port before Prometheus does
            url = f"http://{LOOPBACK}:{free_port()}"
            process = subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address={url[len('http://'):]}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
            processes.append(process)

            def ready():
                if process.poll() is not None:
                    return "exited"
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
                        return "ready" if response.status == 200 else None
                except OSError:
                    return None

            if wait_until(ready, 60, "Prometheus to answer /-/ready", interval=0.1) == "ready":
                return url
        pytest.fail("Prometheus did not start:\n" + (folder / "prometheus.log").read_text())

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def api(url, path, **params):
    """The `data` of a Prometheus API answer; an error answer is returned as {"error"}."""
    try:
        with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}",
                                    timeout=5) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        answer = json.load(error)
    if answer["status"] != "success":
        return {"error": answer.get("error", answer)}
    return answer["data"]


# A vector selector: a metric name (rollguard's, or Prometheus' own `up`) and its matchers.
SELECTOR = re.compile(r"\b(rollguard_[a-z0-9_]+|up)\b\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LEGEND_LABEL = re.compile(r"{{\s*\$?(?:labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*}}")
ANNOTATION_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")


def grafana(expr):
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    return expr


class Usage:
    """One PromQL expression from the examples and the labels its output must carry."""

    def __init__(self, where, expr, printed=()):
        self.where = where
        self.expr = grafana(expr)
        self.printed = set(printed)  # labels a legend or annotation prints
        self.grouped = set()
        for clause in GROUPING.findall(self.expr):
            self.grouped |= {label.strip() for label in clause.split(",") if label.strip()}


def usages_of_the_dashboard():
    board = dashboard()
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            printed = LEGEND_LABEL.findall(target.get("legendFormat", ""))
            found.append(Usage(f"dashboard panel {panel['title']!r}", target["expr"], printed))
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            printed = LEGEND_LABEL.findall(annotation.get("titleFormat", "") +
                                           annotation.get("textFormat", ""))
            found.append(Usage(f"dashboard annotation {annotation['name']!r}",
                               annotation["expr"], printed))
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) \
            else variable["query"]
        match = LABEL_VALUES.match(grafana(query))
        assert match, f"dashboard variable {variable['name']}: not label_values(...): {query}"
        found.append(Usage(f"dashboard variable {variable['name']!r}", match.group(1),
                           [match.group(2)]))
    return found


def usages_of_the_alert_rules(prometheus_url):
    groups = api(prometheus_url, "/api/v1/rules")["groups"]
    found = []
    for group in groups:
        for rule in group["rules"]:
            printed = ANNOTATION_LABEL.findall(json.dumps(rule.get("annotations", {})))
            found.append(Usage(f"alert {rule['name']}", rule["query"], printed))
    return found


def problems_with(usage, prometheus_url):
    """What of `usage` does not exist in what Prometheus scraped, as readable lines."""
    problems = []
    answer = api(prometheus_url, "/api/v1/query", query=usage.expr)
    if "error" in answer:
        return [f"{usage.where}: Prometheus rejects {usage.expr!r}: {answer['error']}"]
    labels_there = set()
    for name, braces in SELECTOR.findall(usage.expr):
        matchers = MATCHER.findall(braces or "")
        series = api(prometheus_url, "/api/v1/query", query=name + (braces or ""))
        if not series.get("result"):
            problems.append(f"{usage.where}: no series {name}{braces or ''}")
            continue
        for result in series["result"]:
            labels_there |= set(result["metric"])
        # Each value a matcher names must exist on its own: result=~"failed|dropped" must
        # not pass because only "failed" is served.
        for label, op, value in matchers:
            if op not in ("=", "=~") or not re.fullmatch(r"[a-zA-Z0-9_:.|-]+", value):
                continue  # a real pattern (".*"): the query above already matched it
            for one in value.split("|"):
                single = name + "{" + f'{label}="{one}"' + "}"
                if not api(prometheus_url, "/api/v1/query", query=single).get("result"):
                    problems.append(f"{usage.where}: no series {single}")
    # `le` counts too: grouping by it needs the _bucket series of a histogram.
    for label in sorted((usage.grouped | usage.printed) - labels_there):
        problems.append(f"{usage.where}: label {label!r} is on none of the series it reads")
    # A printed label the expression's own grouping dropped is printed empty.
    if usage.grouped and not LABEL_VALUES.match(usage.expr):
        for label in sorted(usage.printed - usage.grouped):
            problems.append(f"{usage.where}: prints {label!r}, which its by (...) drops")
    return problems


def test_every_metric_and_label_the_examples_use_is_served(make_config, daemons, target,
                                                           prometheus):
    config = make_config(MAIN, {"api.rules": RULES})
    daemon = daemons(config)
    url = prometheus(bound_port(daemon))

    # Everything a fresh daemon serves once its probe answered and its breakers were
    # reported, seen through the scrape.
    def scraped():
        daemon.assert_running()
        for series in ('up{job="rollguard"} == 1', 'rollguard_breaker_open{breaker="api"}',
                       'rollguard_probe_value{probe="api",field="status"}',
                       'rollguard_probe_duration_seconds_bucket{probe="api"}'):
            if not api(url, "/api/v1/query", query=series).get("result"):
                return None
        return True
    wait_until(scraped, WAIT, "Prometheus to scrape rollguard's probe and breaker series",
               interval=0.2)

    # The alert rules as the real Prometheus loaded them from the example config; every one
    # has been evaluated without an error.
    def evaluated():
        rules = [r for g in api(url, "/api/v1/rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("health") == "ok" for r in rules) else None
    rules = wait_until(evaluated, WAIT, "every example alert rule to be evaluated", interval=0.2)
    assert {r["name"] for r in rules} >= {"RollguardDown", "RollguardBreakerOpen",
                                          "RollguardConfigReloadFailed"}

    usages = usages_of_the_alert_rules(url) + usages_of_the_dashboard()
    # Every alert, every panel query, the annotation and the three query variables.
    assert len(usages) >= len(rules) + 20, [u.where for u in usages]
    problems = [p for usage in usages for p in problems_with(usage, url)]
    assert not problems, "\n".join(problems)

    # The check can fail: a misspelt metric, a result rollguard does not have, and a label
    # neither on the series nor kept by the aggregation are all reported.
    broken = [
        Usage("misspelt", 'sum by (rule) (rollguard_rule_grades{job=~"$job"})', ["rule"]),
        Usage("bad value", 'rollguard_actions_total{result=~"ok|fail"}'),
        Usage("bad label", 'max by (probe) (rollguard_probe_success)', ["rule"]),
        Usage("not parsed", 'sum by (rule (rollguard_rule_grade)'),
    ]
    found = {usage.where: problems_with(usage, url) for usage in broken}
    assert any("no series rollguard_rule_grades" in p for p in found["misspelt"]), found
    assert any('result="fail"' in p for p in found["bad value"]), found
    assert any("'rule'" in p for p in found["bad label"]), found
    assert any("rejects" in p for p in found["not parsed"]), found
    daemon.stop()
