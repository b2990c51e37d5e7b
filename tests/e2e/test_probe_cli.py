"""`rollguard probe NAME --config F` for the exec, promql and systemd probe types.

The real binary runs one probe once and prints every field; it exits 0 when the probe is
up and 1 when it is down. exec runs real Nagios plugins (monitoring-plugins-basic),
promql queries a real Prometheus started here on a free loopback port, systemd is shown
failing clearly when no system bus is reachable (this environment has none).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import urllib.request

import pytest

import harness

PLUGINS = "/usr/lib/nagios/plugins"
PROMETHEUS = "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind((harness.LOOPBACK, 0))
        return s.getsockname()[1]


def write_config(tmp_path, probes):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "rules.d").mkdir(exist_ok=True)
    (conf / "rollguard.conf").write_text(textwrap.dedent(f"""\
        [daemon]
        include   = rules.d/*.rules
        listen    = off
        state_dir = {tmp_path}/state
        """) + textwrap.dedent(probes))
    return conf / "rollguard.conf"


def probe(config, name, env=None):
    """Runs `rollguard probe NAME --config F`: (exit code, {field: text}, stdout)."""
    run = subprocess.run([harness.binary(), "probe", name, "--config", str(config)],
                         capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, **(env or {})))
    fields = {}
    for line in run.stdout.splitlines():
        key, _, value = line.partition(" ")
        fields[key] = value
    return run.returncode, fields, run.stdout + run.stderr


def require(path, package):
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is missing (Debian package {package})")


def test_exec_probe_prints_state_and_perfdata_and_exits_0_when_ok(tmp_path):
    require(f"{PLUGINS}/check_dummy", "monitoring-plugins-basic")
    script = tmp_path / "conf" / "check_disk.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho \"DISK OK - fine | '/var'=45%;80;90 used=2MB rt=250ms\"\n")
    script.chmod(0o755)
    config = write_config(tmp_path, f"""
        [probe dummy]
        type    = exec
        command = {PLUGINS}/check_dummy 0 "all good"

        [probe disk]
        type    = exec
        command = ./check_disk.sh
        """)
    code, fields, out = probe(config, "dummy")
    assert code == 0, out
    assert fields["up"] == "1" and fields["state"] == "0", out
    assert float(fields["latency"]) > 0, out
    assert "error" not in fields, out

    code, fields, out = probe(config, "disk")
    assert code == 0, out
    assert fields["perf./var"] == "0.45", out
    assert fields["perf.used"] == str(2 * 1024 * 1024), out
    assert fields["perf.rt"] == "0.25", out


def test_exec_probe_exits_1_on_a_critical_plugin_and_says_why(tmp_path):
    require(f"{PLUGINS}/check_tcp", "monitoring-plugins-basic")
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, f"""
        [probe port]
        type    = exec
        command = {PLUGINS}/check_tcp -H 127.0.0.1 -p {port}
        """)
    code, fields, out = probe(config, "port")
    assert code == 1, out
    assert fields["up"] == "0" and fields["state"] == "2", out
    assert fields["error"].startswith('"CRITICAL (exit 2): '), out
    assert "Connection refused" in fields["error"], out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    require(PROMETHEUS, "prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    port = free_port()
    log = open(root / "prometheus.log", "w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={root}/prometheus.yml", f"--storage.tsdb.path={root}/data",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited; see {root}/prometheus.log")
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False
    try:
        harness.wait_until(ready, 30, "Prometheus to answer /-/ready")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def test_promql_probe_prints_value_min_max_sum_count(tmp_path, prometheus):
    config = write_config(tmp_path, f"""
        [prometheus]
        url = {prometheus}

        [probe pair]
        type  = promql
        query = vector(1)
           or label_replace(vector(5), "a", "b", "", "")

        [probe nothing]
        type  = promql
        query = absent(vector(1))

        [probe broken]
        type  = promql
        query = sum(vector(1)
        """)
    code, fields, out = probe(config, "pair")
    assert code == 0, out
    assert (fields["up"], fields["value"], fields["min"], fields["max"], fields["sum"],
            fields["count"]) == ("1", "5", "1", "5", "6", "2"), out
    assert float(fields["latency"]) > 0, out

    code, fields, out = probe(config, "nothing")
    assert code == 0, out
    assert fields["count"] == "0" and "value" not in fields and "max" not in fields, out

    code, fields, out = probe(config, "broken")
    assert code == 1, out
    assert fields["up"] == "0", out
    assert "rejected the query (bad_data)" in fields["error"], out


def test_promql_probe_exits_1_when_prometheus_is_unreachable(tmp_path):
    port = free_port()
    config = write_config(tmp_path, f"""
        [prometheus lts]
        url     = http://127.0.0.1:{port}
        timeout = 2s

        [probe q]
        type   = promql
        server = lts
        query  = up
        """)
    code, fields, out = probe(config, "q")
    assert code == 1, out
    assert fields["error"].startswith(f'"cannot reach Prometheus lts at http://127.0.0.1:{port}'), out


def test_promql_probe_naming_an_unknown_server_is_a_config_error(tmp_path):
    config = write_config(tmp_path, """
        [probe q]
        type   = promql
        server = lts
        query  = up
        """)
    code, _, out = probe(config, "q")
    assert code == 2 or code == 1, out
    assert re.search(r"rollguard\.conf:\d+: \[probe q\] server: expected the name of a "
                     r"\[prometheus NAME\] section", out), out


def test_systemd_probe_without_a_system_bus_says_where_it_looked(tmp_path):
    socket_path = tmp_path / "no_bus"
    config = write_config(tmp_path, """
        [probe web]
        type = systemd
        unit = nginx.service
        """)
    code, fields, out = probe(config, "web",
                              env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={socket_path}"})
    assert code == 1, out
    assert fields["up"] == "0", out
    assert fields["error"] == (f'"cannot reach the system bus at unix:path={socket_path}: '
                               'No such file or directory"'), out
