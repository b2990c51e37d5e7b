"""Fixtures for the end-to-end tests: targets, config folders, rollback scripts, daemons.

Everything a test starts is stopped at teardown, even when the test fails. When a test
fails, the log of every daemon it started is attached to the failure report.
"""

import time

import pytest

import harness


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    harness.binary()  # a clear error instead of one failure per test


@pytest.fixture
def target(request):
    server = harness.Target()
    request.node._rollguard_target = server
    yield server
    server.stop()


@pytest.fixture
def rollback(tmp_path, target):
    return harness.RollbackScript(tmp_path / "rollback", target)


@pytest.fixture
def make_config(tmp_path, target, rollback):
    """make_config(main, rules={name: text}, **values) -> ConfigDir in tmp_path/conf.

    {port}, {url}, {rollback}, {tmp} are always available as placeholders.
    """
    def make(main, rules, folder="conf", **values):
        base = {"port": target.port, "url": target.url, "rollback": rollback.command,
                "tmp": tmp_path}
        base.update(values)
        return harness.ConfigDir(tmp_path / folder, main, rules, base)
    return make


@pytest.fixture
def daemons(request):
    """start(config, *args) -> a running Daemon; all are killed at teardown."""
    started = []
    request.node._rollguard_daemons = started

    def start(config, *args, log_name=None):
        daemon = harness.Daemon(config, args, log_name=log_name or f"rollguard-{len(started)}.log")
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for daemon in getattr(item, "_rollguard_daemons", []):
        report.sections.append((f"rollguard log {daemon.log_path}", daemon.log() or "(empty)"))
        try:
            journal = daemon.config.journal.read_text()
        except FileNotFoundError:
            journal = "(absent)"
        report.sections.append((f"actions.jsonl {daemon.config.journal}", journal))
    target = getattr(item, "_rollguard_target", None)
    if target is not None:
        times = [time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
                 for t in list(target.requests)]
        report.sections.append((f"target 127.0.0.1:{target.port} /health requests (mode now "
                                f"{target.mode})", " ".join(times) or "(none)"))
