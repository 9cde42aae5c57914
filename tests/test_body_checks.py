"""Body and content checks (issue 17 point 5): `expect_body`, `expect_body_regex`, `expect_json`.
A right status with the wrong body is a failed probe of kind `body`, against real servers."""

from __future__ import annotations

import json

import pytest

from recovery.config import load
from recovery.errors import ConfigError
from recovery.probe import make_client, probe_once
from tests.test_check import recovery, stored, write_config


@pytest.fixture
def answering(http_server):
    """A real loopback server answering 200 with the body each test sets."""
    url, state = http_server
    return url + "health", state


def app_with(tmp_path, url: str, extra: str):
    path = tmp_path / "recovery.toml"
    path.write_text(f'[[apps]]\nname = "web"\nurl = "{url}"\n{extra}\n')
    return load(path).apps[0]


def probe(app):
    with make_client(app.url, 2) as c:
        return probe_once(c, app.url, 1, app.status_ok, body_check=app.body_problem)


def test_a_body_holding_the_expected_text_is_a_success(answering, tmp_path):
    url, state = answering
    state["body"] = b'{"status": "ok", "db": "up"}'
    for extra in (
        'expect_body = "ok"',
        'expect_body_regex = "\\"db\\":\\\\s*\\"up\\""',
        'expect_json = { path = "status", equals = "ok" }',
    ):
        a = probe(app_with(tmp_path, url, extra))
        assert a.ok and a.error is None, (extra, a)


@pytest.mark.parametrize(
    "extra, detail",
    [
        ('expect_body = "ready"', "body does not contain 'ready'"),
        ('expect_body_regex = "^ready$"', "body does not match /^ready$/"),
        ('expect_json = { path = "status", equals = "ok" }', 'JSON status is "degraded", expected "ok"'),
        ('expect_json = { path = "checks.0.ok", equals = true }', "JSON checks.0.ok is false, expected true"),
        ('expect_json = { path = "uptime", equals = 1 }', "JSON has no 'uptime'"),
    ],
)
def test_a_200_with_the_wrong_body_is_a_body_failure(answering, tmp_path, extra, detail):
    url, state = answering
    state["body"] = json.dumps({"status": "degraded", "checks": [{"ok": False}]}).encode()
    a = probe(app_with(tmp_path, url, extra))
    assert (a.ok, a.error, a.status, a.detail) == (False, "body", 200, detail)


def test_a_body_that_is_not_json_says_so(answering, tmp_path):
    url, state = answering
    state["body"] = b"<html>maintenance</html>"
    a = probe(app_with(tmp_path, url, 'expect_json = { path = "status", equals = "ok" }'))
    assert a.error == "body" and a.detail.startswith("body is not JSON")


@pytest.mark.parametrize(
    "extra, said",
    [
        ('expect_body_regex = "(("', "apps[0].expect_body_regex: '((' is not a valid regular expression"),
        ('expect_json = { path = "status" }', "apps[0].expect_json: needs both path and equals"),
        ('expect_json = { path = "a..b", equals = 1 }', "apps[0].expect_json: path 'a..b': use dotted keys"),
        ('expect_json = { path = "a", equals = 1, other = 2 }', "apps[0].expect_json: unknown key 'other'"),
        ('expect_json = "status"', "apps[0].expect_json: expected a table like"),
        ('expect_body = ""', "apps[0].expect_body: must not be empty"),
    ],
)
def test_a_wrong_expectation_is_a_config_error_with_its_line(tmp_path, extra, said):
    with pytest.raises(ConfigError) as caught:
        app_with(tmp_path, "http://127.0.0.1:3000/", extra)
    assert f"recovery.toml:4: {said}" in str(caught.value)


@pytest.mark.pm2
def test_check_records_a_wrong_body_as_probe_failed_body(pm2, tmp_path):
    app = pm2.start_app("web")
    config = write_config(tmp_path, pm2, app)
    config.write_text(config.read_text() + 'expect_body = "ready"\n')
    done = recovery(pm2, "check", "--config", str(config), "--dry-run")
    failed = [e for e in stored(config, "web") if e.type == "probe.failed"]
    assert failed and all(e.data["error"] == "body" and e.data["status"] == 200 for e in failed), failed
    assert "body does not contain 'ready'" in failed[0].data["detail"]
    assert done.returncode == 2 and "would restart (dry run" in done.stdout, done.stdout + done.stderr
