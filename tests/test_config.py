from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from recovery.config import (
    DEFAULT_FILENAME,
    ENV_VAR,
    AppConfig,
    LogsConfig,
    Problem,
    check_file,
    find_config_path,
    format_duration,
    format_status_ranges,
    load,
    parse_duration,
    parse_status_ranges,
    sample,
)
from recovery.errors import ConfigError

MINIMAL_APP = """
[[apps]]
name = "web"
url = "http://127.0.0.1:3000/"
"""


def write(tmp_path: Path, text: str, name: str = "recovery.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    config, problems = check_file(write(tmp_path, text))
    assert config is None, "expected problems, got a config"
    return problems


def only_problem(tmp_path: Path, text: str) -> Problem:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def app(**fields: object) -> AppConfig:
    values: dict = dict(
        name="web",
        url="http://x/",
        timeout=10.0,
        retries=3,
        retry_delay=5.0,
        expect_status=((200, 399),),
        verify_timeout=60.0,
        restart_command="restart",
    )
    values.update(fields)
    return AppConfig(**values)


# --- the sample -----------------------------------------------------------------------------


def test_the_sample_passes_check_file(tmp_path):
    config, problems = check_file(write(tmp_path, sample()))
    assert problems == []
    assert config is not None


def test_the_sample_loads_with_the_given_url_and_name(tmp_path):
    config = load(write(tmp_path, sample(url="https://example.com/health", name='my "app"')))
    assert config.apps[0].url == "https://example.com/health"
    assert config.apps[0].name == 'my "app"'


def test_the_sample_mentions_every_key():
    text = sample()
    for key in (
        "path",
        "busy_timeout",
        "bin",
        "name",
        "url",
        "timeout",
        "retries",
        "retry_delay",
        "expect_status",
        "verify_timeout",
        "restart_command",
        "textfile",
        "postgres",
    ):
        assert f"{key} = " in text, key


def test_the_sample_comments_every_key():
    for line in sample().splitlines():
        if " = " in line:
            assert "  # " in line, line


# --- defaults -------------------------------------------------------------------------------


def test_it_fills_in_defaults_for_an_app(tmp_path):
    config = load(write(tmp_path, MINIMAL_APP))
    assert config.apps == (app(url="http://127.0.0.1:3000/"),)


def test_it_fills_in_defaults_for_store_and_pm2(tmp_path):
    config = load(write(tmp_path, MINIMAL_APP))
    assert config.store.path == tmp_path / "data" / "recovery.db"
    assert config.store.busy_timeout == 5.0
    assert config.pm2.bin is None


def test_it_records_where_the_config_came_from(tmp_path):
    path = write(tmp_path, MINIMAL_APP)
    assert load(path).source == path


def test_it_reads_every_key_of_an_app(tmp_path):
    config = load(
        write(
            tmp_path,
            """
        [[apps]]
        name = "api"
        url = "https://api.example.com:8443/health"
        timeout = "2s"
        retries = 5
        retry_delay = 0
        expect_status = "200,204"
        verify_timeout = "2m"
        restart_command = "reload"
    """,
        )
    )
    assert config.apps == (
        app(
            name="api",
            url="https://api.example.com:8443/health",
            timeout=2.0,
            retries=5,
            retry_delay=0.0,
            expect_status=((200, 200), (204, 204)),
            verify_timeout=120.0,
            restart_command="reload",
        ),
    )


def test_it_keeps_several_apps_in_order(tmp_path):
    config = load(
        write(
            tmp_path,
            MINIMAL_APP
            + """
        [[apps]]
        name = "api"
        url = "http://127.0.0.1:4000/"
    """,
        )
    )
    assert [a.name for a in config.apps] == ["web", "api"]


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("7d", 604800),
        ("1.5s", 1.5),
        (" 2 s ", 2),
        ("0s", 0),
        (".5s", 0.5),
    ],
)
def test_it_parses_a_duration_string(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("number", [30, 2.5, 0])
def test_it_reads_a_bare_number_as_seconds(number):
    assert parse_duration(number) == number


@pytest.mark.parametrize("text", ["ten seconds", "30", "5x", "s", "", "1.2.3s", "5 m s", "1e3s", "30S"])
def test_it_rejects_a_malformed_duration_with_the_forms_to_use(text):
    with pytest.raises(ValueError, match=r"bad duration .*\(use 500ms, 30s, 5m, 1h, 7d, 1h30m\)"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["-5s", -1, -0.5])
def test_it_rejects_a_negative_duration(value):
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), [1], None])
def test_it_rejects_a_duration_that_is_not_a_string_or_finite_number(value):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.5, "500ms"),
        (30, "30s"),
        (300, "5m"),
        (3600, "1h"),
        (604800, "7d"),
        (0, "0s"),
        (90, "90s"),
        (1.5, "1.5s"),
        (0.1 + 0.2, "300ms"),
        (0.0005, "0.5ms"),
    ],
)
def test_it_formats_a_duration_in_the_largest_whole_unit(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.5, 30, 300, 3600, 604800, 1.5, 90, 0.0005, 12.345])
def test_a_formatted_duration_parses_back(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_it_names_the_line_of_a_bad_duration(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + 'timeout = "ten seconds"\n')
    assert str(problem) == (
        f"{tmp_path / 'recovery.toml'}:4: apps[0].timeout: bad duration 'ten seconds' (use 500ms, 30s, 5m, 1h, 7d, 1h30m)"
    )


def test_it_rejects_a_zero_timeout(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + "timeout = 0\n")
    assert (problem.key, problem.message) == ("apps[0].timeout", "must be longer than 0")


def test_it_rejects_a_zero_busy_timeout(tmp_path):
    problem = only_problem(tmp_path, '[store]\nbusy_timeout = "0s"\n' + MINIMAL_APP)
    assert (problem.line, problem.key) == (2, "store.busy_timeout")


def test_it_allows_a_zero_retry_delay(tmp_path):
    assert load(write(tmp_path, MINIMAL_APP + 'retry_delay = "0s"\n')).apps[0].retry_delay == 0


def test_it_rejects_a_duration_of_the_wrong_type(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + "verify_timeout = [60]\n")
    assert problem.message == "expected a duration like '30s', got array"


# --- status codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, ranges",
    [
        ("200", ((200, 200),)),
        (200, ((200, 200),)),
        ("200-299", ((200, 299),)),
        ("200-299,301", ((200, 299), (301, 301))),
        (" 200 - 299 , 301 ", ((200, 299), (301, 301))),
        ([200, "300-302"], ((200, 200), (300, 302))),
    ],
)
def test_it_parses_status_ranges(value, ranges):
    assert parse_status_ranges(value) == ranges


@pytest.mark.parametrize("value", ["2xx", "200,", "", "200-", "-200", True, 2.0, [], "200;301"])
def test_it_rejects_malformed_status_ranges(value):
    with pytest.raises(ValueError, match="status codes"):
        parse_status_ranges(value)


@pytest.mark.parametrize("value", ["99", "600", 700, "100-600"])
def test_it_rejects_a_status_outside_100_to_599(value):
    with pytest.raises(ValueError, match=r"not an HTTP status code \(100-599\)"):
        parse_status_ranges(value)


def test_it_rejects_a_backwards_status_range():
    with pytest.raises(ValueError, match="backwards"):
        parse_status_ranges("399-200")


def test_it_formats_status_ranges_as_it_reads_them():
    assert format_status_ranges(parse_status_ranges("200-299,301")) == "200-299,301"


@pytest.mark.parametrize("code, ok", [(199, False), (200, True), (250, True), (301, True), (302, False)])
def test_an_app_accepts_only_its_expected_statuses(code, ok):
    assert app(expect_status=((200, 299), (301, 301))).status_ok(code) is ok


def test_it_names_the_line_of_bad_status_ranges(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + 'expect_status = "200-99"\n')
    assert (problem.line, problem.key) == (4, "apps[0].expect_status")


# --- unknown keys ---------------------------------------------------------------------------


def test_it_names_the_line_of_an_unknown_top_level_table(tmp_path):
    problem = only_problem(tmp_path, '[stor]\npath = "x.db"\n' + MINIMAL_APP)
    assert (problem.line, problem.key) == (1, "stor")
    assert problem.message == "unknown key 'stor' (did you mean 'store'?)"


def test_it_names_the_line_of_an_unknown_top_level_key(tmp_path):
    problem = only_problem(tmp_path, "verbose = true\n" + MINIMAL_APP)
    assert (problem.line, problem.key, problem.message) == (1, "verbose", "unknown key 'verbose'")


def test_it_names_the_line_of_an_unknown_key_in_a_table(tmp_path):
    problem = only_problem(tmp_path, '[store]\n# the db\npth = "x.db"\n' + MINIMAL_APP)
    assert (problem.line, problem.key) == (3, "store.pth")
    assert problem.message == "unknown key 'pth' (did you mean 'path'?)"


def test_it_names_the_line_of_an_unknown_key_in_an_app(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + MINIMAL_APP.replace("web", "api") + 'timeot = "5s"\n')
    assert str(problem) == (
        f"{tmp_path / 'recovery.toml'}:8: apps[1].timeot: unknown key 'timeot' (did you mean 'timeout'?)"
    )


def test_it_finds_the_line_of_a_quoted_key(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + '"time out" = "5s"\n')
    assert (problem.line, problem.key) == (4, 'apps[0]."time out"')


def test_it_finds_the_line_of_a_dotted_key(tmp_path):
    problem = only_problem(tmp_path, 'store.pth = "x.db"\n' + MINIMAL_APP)
    assert (problem.line, problem.key) == (1, "store.pth")


def test_it_is_not_fooled_by_keys_inside_multiline_values(tmp_path):
    problem = only_problem(
        tmp_path,
        '''
        [store]
        path = """
        timeot = 1
        [[apps]]
        """
        [[apps]]
        name = "web"
        url = "http://127.0.0.1:3000/"
        expect_status = [
          200,  # timeot = 1
          "300-302",
        ]
        timeot = "5s"
    ''',
    )
    assert (problem.line, problem.key) == (13, "apps[0].timeot")


# --- wrong types and values -----------------------------------------------------------------


def test_it_rejects_retries_that_are_not_an_integer(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + 'retries = "three"\n')
    assert str(problem).endswith(":4: apps[0].retries: expected an integer, got string 'three'")


@pytest.mark.parametrize("value", ["true", "2.0"])
def test_it_rejects_retries_of_a_number_like_type(tmp_path, value):
    problem = only_problem(tmp_path, MINIMAL_APP + f"retries = {value}\n")
    assert problem.message.startswith("expected an integer")


def test_it_rejects_zero_retries(tmp_path):
    assert only_problem(tmp_path, MINIMAL_APP + "retries = 0\n").message == "must be at least 1, got 0"


def test_it_rejects_a_url_that_is_not_a_string(tmp_path):
    problem = only_problem(tmp_path, '[[apps]]\nname = "web"\nurl = 5\n')
    assert (problem.line, problem.key) == (3, "apps[0].url")
    assert problem.message == "expected a string, got integer 5"


def test_it_rejects_a_store_that_is_not_a_table(tmp_path):
    problem = only_problem(tmp_path, 'store = "x.db"\n' + MINIMAL_APP)
    assert (problem.line, problem.key) == (1, "store")
    assert problem.message.startswith("expected a [store] table")


def test_it_rejects_an_unknown_restart_command_with_a_suggestion(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + 'restart_command = "relaod"\n')
    assert problem.message == "must be 'restart' or 'reload', got 'relaod' (did you mean 'reload'?)"


def test_it_rejects_an_empty_app_name(tmp_path):
    problem = only_problem(tmp_path, '[[apps]]\nname = " "\nurl = "http://x/"\n')
    assert (problem.key, problem.message) == ("apps[0].name", "must not be empty")


def test_it_reports_every_problem_not_just_the_first(tmp_path):
    problems = problems_of(tmp_path, '[[apps]]\nname = 1\nurl = "ftp://x/"\nretries = 0\n')
    assert [p.key for p in problems] == ["apps[0].name", "apps[0].url", "apps[0].retries"]


def test_it_sorts_problems_by_line(tmp_path):
    problems = problems_of(tmp_path, MINIMAL_APP + 'retries = 0\n[store]\nbusy_timeout = "x"\n[stor]\n')
    assert [p.line for p in problems] == sorted(p.line for p in problems)


# --- urls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/", "is not an http:// or https:// URL"),
        ("127.0.0.1:3000", "is not an http:// or https:// URL"),
        ("http:///health", "has no host"),
        ("http://example.com:99999/", "is not a valid URL"),
        ("http://[::1/", "is not a valid URL"),
        ("http://example.com/a b", "contains whitespace"),
    ],
)
def test_it_rejects_a_bad_url(tmp_path, url, message):
    problem = only_problem(tmp_path, f'[[apps]]\nname = "web"\nurl = "{url}"\n')
    assert (problem.line, problem.key) == (3, "apps[0].url")
    assert message in problem.message


@pytest.mark.parametrize("url", ["http://localhost:3000/", "HTTPS://example.com", "http://[::1]:3000/health"])
def test_it_accepts_a_good_url(tmp_path, url):
    assert load(write(tmp_path, f'[[apps]]\nname = "web"\nurl = "{url}"\n')).apps[0].url == url


def test_it_points_a_missing_url_at_its_apps_header(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + '\n[[apps]]\nname = "api"\n')
    assert (problem.line, problem.key, problem.message) == (5, "apps[1].url", "missing (required)")


def test_it_requires_an_app_name(tmp_path):
    problem = only_problem(tmp_path, '[[apps]]\nurl = "http://x/"\n')
    assert (problem.line, problem.key) == (1, "apps[0].name")


# --- apps -----------------------------------------------------------------------------------


def test_it_rejects_duplicate_app_names_at_the_second(tmp_path):
    problem = only_problem(tmp_path, MINIMAL_APP + MINIMAL_APP)
    assert (problem.line, problem.key) == (6, "apps[1].name")
    assert problem.message == "duplicate app name 'web' (also apps[0])"


def test_it_requires_at_least_one_app(tmp_path):
    problem = only_problem(tmp_path, '[store]\npath = "x.db"\n')
    assert (problem.line, problem.key) == (None, "apps")
    assert problem.message.startswith("no apps configured")


def test_it_says_to_write_double_brackets_for_apps(tmp_path):
    problem = only_problem(tmp_path, '[apps]\nname = "web"\nurl = "http://x/"\n')
    assert (problem.line, problem.key) == (1, "apps")
    assert "write [[apps]], not [apps]" in problem.message


def test_it_accepts_apps_as_an_inline_array(tmp_path):
    config = load(write(tmp_path, 'apps = [{ name = "web", url = "http://x/" }]\n'))
    assert config.apps[0].name == "web"


# --- paths ----------------------------------------------------------------------------------


def test_it_resolves_a_relative_store_path_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etc").mkdir()
    config = load(write(tmp_path, '[store]\npath = "db/events.db"\n' + MINIMAL_APP, name="etc/recovery.toml"))
    assert config.store.path == tmp_path / "etc" / "db" / "events.db"


def test_it_resolves_the_store_path_of_a_config_named_relative_to_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, MINIMAL_APP)
    assert load(Path("recovery.toml")).store.path == tmp_path / "data" / "recovery.db"


def test_it_keeps_an_absolute_store_path(tmp_path):
    config = load(write(tmp_path, '[store]\npath = "/var/lib/recovery/events.db"\n' + MINIMAL_APP))
    assert config.store.path == Path("/var/lib/recovery/events.db")


def test_it_expands_the_home_folder_in_the_store_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load(write(tmp_path, '[store]\npath = "~/events.db"\n' + MINIMAL_APP))
    assert config.store.path == tmp_path / "home" / "events.db"


def test_it_keeps_a_bare_pm2_name(tmp_path):
    assert load(write(tmp_path, '[pm2]\nbin = "pm2"\n' + MINIMAL_APP)).pm2.bin == "pm2"


def test_it_expands_the_home_folder_in_the_pm2_bin(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load(write(tmp_path, '[pm2]\nbin = "~/.npm/bin/pm2"\n' + MINIMAL_APP))
    assert config.pm2.bin == str(tmp_path / "home" / ".npm" / "bin" / "pm2")


def test_it_resolves_a_relative_pm2_path_against_the_config_folder(tmp_path):
    config = load(write(tmp_path, '[pm2]\nbin = "node_modules/.bin/pm2"\n' + MINIMAL_APP))
    assert config.pm2.bin == str(tmp_path / "node_modules" / ".bin" / "pm2")


# --- finding the file -----------------------------------------------------------------------


def test_an_explicit_path_wins_over_the_environment(tmp_path):
    path = find_config_path("/etc/a.toml", environ={ENV_VAR: "/etc/b.toml"}, cwd=tmp_path)
    assert path == Path("/etc/a.toml")


def test_the_environment_wins_over_the_cwd(tmp_path):
    assert find_config_path(None, environ={ENV_VAR: "/etc/b.toml"}, cwd=tmp_path) == Path("/etc/b.toml")


def test_it_falls_back_to_the_file_in_the_cwd(tmp_path):
    assert find_config_path(None, environ={}, cwd=tmp_path) == tmp_path / DEFAULT_FILENAME


def test_it_ignores_an_empty_environment_variable(tmp_path):
    assert find_config_path(None, environ={ENV_VAR: ""}, cwd=tmp_path) == tmp_path / DEFAULT_FILENAME


def test_it_resolves_a_relative_explicit_path_against_the_cwd(tmp_path):
    assert find_config_path("conf/r.toml", environ={}, cwd=tmp_path) == tmp_path / "conf" / "r.toml"


def test_it_reads_the_process_environment_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "/etc/c.toml")
    assert find_config_path(None, cwd=tmp_path) == Path("/etc/c.toml")


def test_it_does_not_require_the_file_to_exist(tmp_path):
    assert find_config_path(tmp_path / "nope.toml", environ={}) == tmp_path / "nope.toml"


# --- unreadable files -----------------------------------------------------------------------


def test_a_missing_file_says_how_to_get_one(tmp_path):
    path = tmp_path / "recovery.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"config file not found: {path} (pass --config, set RECOVERY_CONFIG, put one in ~/.config/recovery/"
        " or /etc/recovery/, or run `recovery init`)"
    )


def test_a_missing_file_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"not found: {tmp_path / 'recovery.toml'} "):
        load(Path("recovery.toml"))


def test_a_toml_syntax_error_is_one_line_with_file_and_line(tmp_path):
    path = write(tmp_path, MINIMAL_APP + "retries = = 3\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4: invalid TOML: ")
    assert "(column " in message


def test_a_syntax_error_at_the_end_of_the_file_names_the_last_line(tmp_path):
    problem = only_problem(tmp_path, '[[apps]]\nname = "web"\nurl = "http://x/\n')
    assert problem.line == 3


def test_a_file_that_is_not_utf8_is_one_problem(tmp_path):
    path = tmp_path / "recovery.toml"
    path.write_bytes(b'[[apps]]\nname = "w\xe9b"\n')
    _, problems = check_file(path)
    assert [(p.line, p.message) for p in problems] == [(2, "not UTF-8 text (TOML files must be UTF-8)")]


def test_a_folder_instead_of_a_file_is_one_problem(tmp_path):
    _, problems = check_file(tmp_path)
    assert len(problems) == 1
    assert problems[0].message.startswith("cannot read the file")


def test_load_names_the_first_problem_and_counts_the_rest(tmp_path):
    path = write(tmp_path, '[[apps]]\nname = "web"\nurl = "ftp://x/"\nretries = 0\ntimeout = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}:3: apps[0].url: ")
    assert str(caught.value).endswith(" (and 2 more)")


# --- problems -------------------------------------------------------------------------------


def test_a_problem_without_a_line_names_just_the_file():
    assert str(Problem(None, "apps", "none", Path("r.toml"))) == "r.toml: apps: none"


def test_a_problem_without_a_file_names_the_line():
    assert str(Problem(3, "store.path", "bad")) == "line 3: store.path: bad"


# --- [logs] -----------------------------------------------------------------------------------


def test_logs_defaults_and_every_key(tmp_path):
    assert load(write(tmp_path, MINIMAL_APP)).logs == LogsConfig()
    text = (
        MINIMAL_APP
        + """
        [logs]
        keep_raw = "14d"
        in_check = false
        check_budget = "512KB"
        check_every = "5m"
        first_read = "end"
        keep_stdout = true
        """
    )
    logs = load(write(tmp_path, text)).logs
    assert logs == LogsConfig(
        keep_raw=14 * 86400,
        in_check=False,
        check_budget=512 * 1024,
        check_every=300,
        first_read="end",
        keep_stdout=True,
    )
    assert load(write(tmp_path, MINIMAL_APP + "\n[logs]\ncheck_budget = 4194304\n")).logs.check_budget == 4 << 20


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("in_check", '"yes"', "expected true or false"),
        ("check_budget", '"2 parsecs"', "expected a size like '2MB'"),
        ("check_budget", "100", "at least 1KB"),
        ("first_read", '"middle"', "'beginning' or 'end'"),
        ("check_every", '"-1s"', "check_every"),
        ("keep_stdout", "1", "expected true or false"),
        ("keep_forever", "true", "keep_forever"),
    ],
)
def test_logs_bad_values_are_named_with_their_line(tmp_path, key, value, says):
    problem = only_problem(tmp_path, MINIMAL_APP + f"\n[logs]\n{key} = {value}\n")
    assert says in str(problem) and problem.line is not None, str(problem)
