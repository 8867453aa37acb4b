"""Configuration files: loading, validation messages, secret references and the shipped examples."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from arsync.config import (
    Config,
    ConnectorConfig,
    InvalidConfig,
    Settings,
    load,
    parse_duration,
)
from arsync.connectors.base import QBO_LIMITS, XERO_LIMITS, Endpoints, Limits
from arsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-value-that-must-never-show"
SECRET_ENV = "ARSYNC_TEST_CLIENT_SECRET"

BASE: dict[str, Any] = {
    "platform": "quickbooks",
    "display_name": "Acme Plumbing Ltd",
    "policy": "standard",
    "oauth": {"client_id": "ABC123", "client_secret_env": SECRET_ENV},
}


def toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the tests: top-level values, then one level of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def merged(**changes: Any) -> dict[str, Any]:
    """BASE with tables merged key by key; a value of None removes the key."""
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    for key, change in changes.items():
        if isinstance(change, dict) and isinstance(data.get(key), dict):
            data[key].update(change)
            data[key] = {k: v for k, v in data[key].items() if v is not None}
        elif change is None:
            data.pop(key, None)
        else:
            data[key] = change
    return data


def write(home: Path, rel: str, text: str) -> Path:
    path = home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def connector_file(home: Path, name: str = "acme", **changes: Any) -> Path:
    return write(home, f"connectors/{name}.toml", toml(merged(**changes)))


def problems(home: Path) -> list[str]:
    with pytest.raises(InvalidConfig) as caught:
        load(home)
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems]
    return lines


def only_connector(home: Path, name: str = "acme") -> ConnectorConfig:
    return load(home).connectors[name]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    root = tmp_path / "home"
    root.mkdir()
    return root


# --- defaults and the shipped files ----------------------------------------------------------


def test_an_empty_home_loads_the_defaults(home: Path) -> None:
    config = load(home)
    assert config.connectors == {}
    assert config.home == home
    assert config.settings.model_dump() == Settings().model_dump()
    assert config.settings.store_url() == f"sqlite:///{home}/state/arsync.db"
    assert config.settings.key_location() == home / "secrets" / "arsync.key"
    assert config.settings.sync.workers == 4
    assert (config.settings.log.level, config.settings.log.format) == ("info", "auto")


def test_the_shipped_arsync_toml_states_the_defaults(home: Path) -> None:
    shutil.copy(ROOT / "config" / "arsync.toml", write(home, "config/arsync.toml", ""))
    settings = load(home).settings
    assert settings.model_dump() == Settings().model_dump()
    assert settings.store_url() == f"sqlite:///{home}/state/arsync.db"


@pytest.mark.parametrize(
    ("example", "name", "code", "limits", "env"),
    [
        ("acme-quickbooks", "acme-plumbing", "qbo", QBO_LIMITS, "ARSYNC_ACME_PLUMBING_SECRET"),
        ("acme-xero", "acme-design", "xero", XERO_LIMITS, "ARSYNC_ACME_DESIGN_SECRET"),
    ],
)
def test_the_shipped_examples_validate_once_copied(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: str,
    name: str,
    code: str,
    limits: Any,
    env: str,
) -> None:
    source = ROOT / "connectors" / f"{example}.toml.example"
    text = source.read_text(encoding="utf-8")
    assert "copy" in text and "NAME.toml" in text
    assert "client_secret =" not in text  # secrets only by reference
    # The example itself sits beside the real file and is ignored, like a README.
    (home / "connectors").mkdir()
    shutil.copy(source, home / "connectors" / source.name)
    shutil.copy(source, home / "connectors" / f"{name}.toml")
    write(home, "connectors/README", "not a connector")
    monkeypatch.setenv(env, "example-secret")
    connector = load(home).connectors[name]
    assert list(load(home).connectors) == [name]
    assert connector.platform_code == code
    assert connector.enabled and connector.policy == "standard"
    assert connector.sync_interval == timedelta(minutes=15)
    assert connector.sweep_interval == timedelta(hours=6)
    assert connector.limits() == limits
    assert connector.endpoints() == Endpoints.production(code)
    assert connector.client_secret() == "example-secret"


def test_other_files_in_connectors_are_ignored(home: Path) -> None:
    write(home, "connectors/README.md", "# connectors\n")
    write(home, "connectors/broken.toml.example", "this is = = not toml")
    write(home, "connectors/acme.toml~", "platform = 'sage'")
    assert load(home).connectors == {}


# --- arsync.toml -----------------------------------------------------------------------------


def test_arsync_toml_values_are_read(home: Path) -> None:
    write(
        home,
        "config/arsync.toml",
        toml(
            {
                "store": {"url": "postgresql+psycopg://arsync@db.internal/arsync"},
                "secrets": {"key_file": "/etc/arsync/key"},
                "sync": {"workers": 8},
                "log": {"level": "debug", "format": "json"},
            }
        ),
    )
    settings = load(home).settings
    assert settings.store_url() == "postgresql+psycopg://arsync@db.internal/arsync"
    assert settings.key_location() == Path("/etc/arsync/key")
    assert settings.sync.workers == 8
    assert (settings.log.level, settings.log.format) == ("debug", "json")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/x.db", "sqlite:///{home}/data/x.db"),
        ("sqlite:////var/lib/arsync/x.db", "sqlite:////var/lib/arsync/x.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql://arsync@localhost/arsync", "postgresql://arsync@localhost/arsync"),
    ],
)
def test_store_url_resolves_relative_sqlite_paths_against_home(
    home: Path, url: str, expected: str
) -> None:
    write(home, "config/arsync.toml", toml({"store": {"url": url}}))
    assert load(home).settings.store_url() == expected.format(home=home)


def test_a_systemd_credential_wins_over_key_file(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write(home, "config/arsync.toml", toml({"secrets": {"credential": "arsync-key"}}))
    settings = load(home).settings
    with pytest.raises(ConfigError) as caught:
        settings.key_location()
    assert "config/arsync.toml: secrets.credential:" in str(caught.value)
    assert "CREDENTIALS_DIRECTORY" in str(caught.value)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert settings.key_location() == tmp_path / "creds" / "arsync-key"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"store": {"urll": "sqlite:///x.db"}}, 'store.urll: unknown key (did you mean "url"?)'),
        ({"sync": {"Workers": 2}}, 'sync.Workers: unknown key (did you mean "workers"?)'),
        ({"sync": {"workers": 0}}, "sync.workers: must be at least 1, got 0"),
        ({"sync": {"workers": 33}}, "sync.workers: must be at most 32, got 33"),
        ({"sync": {"workers": "4"}}, 'sync.workers: must be a whole number, got "4"'),
        (
            {"log": {"level": "verbose"}},
            'log.level: must be "debug", "info", "warning" or "error", got "verbose"',
        ),
        ({"log": {"format": "xml"}}, 'log.format: must be "auto", "console" or "json", got "xml"'),
        ({"store": {"url": "mysql://x@h/db"}}, "store.url: must be a SQLite or PostgreSQL URL"),
        ({"store": {"url": "postgresql://x@h"}}, "store.url: must name the database"),
        ({"secrets": {"credential": "../key"}}, "secrets.credential: must be a credential name"),
        ({"secrets": {"credential": ".."}}, "secrets.credential: must be a credential name"),
        ({"store": "sqlite:///x.db"}, 'store: must be a table, got "sqlite:///x.db"'),
        ({"daemon": {"workers": 2}}, "daemon.workers: unknown key"),
        ({"daemon": {"listen": "0.0.0.0:9187"}}, "daemon.listen: must be a loopback address"),
        ({"digest": {"to": "owner@example.com"}}, "digest: needs [mail]"),
        ({"unknown": {"x": 1}}, "unknown: unknown key"),
    ],
)
def test_arsync_toml_problems_are_plain_sentences(
    home: Path, table: dict[str, Any], expected: str
) -> None:
    write(home, "config/arsync.toml", toml(table))
    [line] = problems(home)
    assert line.startswith(f"config/arsync.toml: {expected}")
    assert "Input should" not in line and "pydantic" not in line


def test_a_database_password_is_not_echoed(home: Path) -> None:
    write(home, "config/arsync.toml", toml({"store": {"url": "mysql://arsync:pa55word@h/db"}}))
    [line] = problems(home)
    assert "pa55word" not in line and "arsync:***@h/db" in line


# --- connector files -------------------------------------------------------------------------


def test_a_valid_connector_and_its_derived_values(home: Path) -> None:
    connector_file(
        home,
        sync={"interval": 90, "sweep_interval": "2h"},
        limits={"per_minute": 100, "park_after": "30s"},
        oauth={"redirect_uri": "http://localhost:8723/callback"},
        enabled=False,
    )
    connector = only_connector(home)
    assert connector.name == "acme" and connector.source == "connectors/acme.toml"
    assert connector.platform == "quickbooks" and connector.platform_code == "qbo"
    assert connector.display_name == "Acme Plumbing Ltd" and not connector.enabled
    assert connector.sync_interval == timedelta(seconds=90)
    assert connector.sweep_interval == timedelta(hours=2)
    assert connector.limits() == Limits(
        per_minute=100, per_second=10, concurrent=10, per_day=None, park_after=timedelta(seconds=30)
    )
    assert connector.oauth.redirect_uri == "http://localhost:8723/callback"
    assert connector.oauth.scopes is None


def test_an_idempotency_window_of_its_own_reaches_the_retries(home: Path) -> None:
    from arsync.connectors.base import Link
    from arsync.runtime import retry_policy

    connector_file(home, limits={"idempotency_window": "0s"})
    limits = only_connector(home).limits()
    assert limits.idempotency_window == timedelta(0)
    link = Link("acme", "qbo", "1", "https://example.invalid", limits)
    assert retry_policy(link).idempotency_window["qbo"] == timedelta(0)
    # unset, the default stands: under the six minutes reported for Xero
    connector_file(home)
    default = Link("acme", "xero", "1", "https://example.invalid", only_connector(home).limits())
    assert retry_policy(default).idempotency_window["xero"] == timedelta(minutes=5)


def test_sandbox_endpoints_allow_raised_limits(home: Path) -> None:
    connector_file(
        home,
        platform="xero",
        endpoints={"sandbox": "http://127.0.0.1:8765"},
        limits={"per_minute": 100_000, "per_day": 1_000_000, "per_second": 50},
    )
    connector = only_connector(home)
    assert connector.endpoints() == Endpoints.sandbox("xero", "http://127.0.0.1:8765")
    limits = connector.limits()
    assert (limits.per_minute, limits.per_day, limits.per_second) == (100_000, 1_000_000, 50)
    assert limits.concurrent == XERO_LIMITS.concurrent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60, timedelta(seconds=60)),
        ("90", timedelta(seconds=90)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        (" 2h ", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
    ],
)
def test_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["15 minutes", "1.5h", "-5m", "15M", 1.5, True, ""])
def test_durations_refused(value: object) -> None:
    with pytest.raises(ValueError, match="duration like"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sync": {"interval": "5"}}, 'sync.interval: must be at least 60 seconds, got "5"'),
        ({"sync": {"interval": 59}}, "sync.interval: must be at least 60 seconds, got 59"),
        (
            {"sync": {"sweep_interval": "14m"}},
            'sync.sweep_interval: must be at least 15 minutes, got "14m"',
        ),
        (
            {"sync": {"interval": "soon"}},
            'sync.interval: must be a number of seconds or a duration like "90s", "15m" or "2h", '
            'got "soon"',
        ),
        (
            {"oauth": {"client_secret_file": "/etc/arsync/secrets/acme"}},
            "oauth.client_secret: give client_secret_env or client_secret_file, not both",
        ),
        (
            {"oauth": {"client_secret_env": None}},
            "oauth.client_secret: give client_secret_env (an environment variable's name) or "
            "client_secret_file (a file's path)",
        ),
        ({"platform": "sage"}, 'platform: must be "quickbooks" or "xero", got "sage"'),
        ({"platform": "qbo"}, 'platform: must be "quickbooks" or "xero", got "qbo"'),
        ({"platform": None}, "platform: is required"),
        ({"oauth": {"client_id": None}}, "oauth.client_id: is required"),
        ({"oauth": None}, "oauth: is required"),
        ({"display_name": "  "}, 'display_name: must not be empty, got "  "'),
        ({"enabled": "yes"}, 'enabled: must be true or false, got "yes"'),
        ({"policy": "Gentle Plan"}, "policy: must be lowercase letters"),
        ({"sync": "15m"}, 'sync: must be a table, got "15m"'),
        ({"interval": "15m"}, "interval: unknown key here (it belongs in [sync])"),
        (
            {"endpoints": {"timezone": "Europe/London"}},
            "endpoints.timezone: unknown key here (timezone belongs at the top of the file, "
            "before the first [table]: after a header, TOML puts a key in that table)",
        ),
        ({"timezone": "Europe/Londn"}, 'timezone: unknown time zone "Europe/Londn"'),
        (
            {"limits": {"per_minit": 5}},
            'limits.per_minit: unknown key (did you mean "per_minute"?)',
        ),
        ({"limits": {"per_minute": 0}}, "limits.per_minute: must be at least 1, got 0"),
        (
            {"limits": {"per_minute": 600}},
            "limits.per_minute: QuickBooks Online allows at most 500 calls a minute; "
            "a higher limit is only for the sandbox ([endpoints] sandbox), got 600",
        ),
        (
            {"platform": "xero", "limits": {"per_day": 6000}},
            "limits.per_day: Xero allows at most 5000 calls a day",
        ),
        ({"limits": {"park_after": "later"}}, "limits.park_after: must be a number of seconds"),
        (
            {"endpoints": {"sandbox": "127.0.0.1:8765"}},
            'endpoints.sandbox: must be an http:// or https:// URL, got "127.0.0.1:8765"',
        ),
        (
            {"endpoints": {"sandbox_url": "x"}},
            'endpoints.sandbox_url: unknown key (did you mean "s',
        ),
        ({"oauth": {"redirect_uri": "localhost/cb"}}, "oauth.redirect_uri: must be an http://"),
        ({"oauth": {"scopes": []}}, "oauth.scopes: must list at least one scope"),
        (
            {"platform": "xero", "oauth": {"scopes": ["accounting.settings.read"]}},
            'oauth.scopes: must include "offline_access" for Xero (without it Xero gives no '
            'refresh token), got ["accounting.settings.read"]',
        ),
        (
            {"platform": "xero", "oauth": {"scopes": ["offline_access", "accounting.invoices"]}},
            'oauth.scopes: must include "accounting.settings.read" or "accounting.settings" for '
            "Xero (to read the organisation's time zone and currency)",
        ),
        ({"oauth": {"client_secret_env": "MY-SECRET"}}, "oauth.client_secret_env: must be an env"),
        ({"name": "other"}, "name: unknown key (a connector's name is its file name)"),
    ],
)
def test_connector_problems_are_plain_sentences(
    home: Path, changes: dict[str, Any], expected: str
) -> None:
    write(home, "connectors/acme.toml", toml(merged(**changes)))
    [line] = problems(home)
    assert line.startswith(f"connectors/acme.toml: {expected}")
    assert "Input should" not in line and "pydantic" not in line


def test_problems_between_keys_come_out_with_the_others(home: Path) -> None:
    # The both-secrets and over-the-limit checks still run when another key is invalid.
    connector_file(
        home,
        display_name="",
        limits={"per_second": 20},
        oauth={"client_secret_file": "/x"},
    )
    keys = [line.split(": ")[1] for line in problems(home)]
    assert sorted(keys) == ["display_name", "limits.per_second", "oauth.client_secret"]


@pytest.mark.parametrize("stem", ["Bad Name", "ACME", "acme_books", "-acme", "acmé"])
def test_a_connector_file_name_must_be_a_plain_name(home: Path, stem: str) -> None:
    write(home, f"connectors/{stem}.toml", toml(BASE))
    assert problems(home) == [
        f"connectors/{stem}.toml: the file name must be lowercase letters, digits and hyphens, "
        "starting with a letter or digit (e.g. acme-books.toml)"
    ]


def test_a_badly_named_file_still_has_its_contents_checked(home: Path) -> None:
    write(home, "connectors/Bad Name.toml", toml(merged(platform="sage")))
    lines = problems(home)
    assert len(lines) == 2
    assert (
        lines[1] == 'connectors/Bad Name.toml: platform: must be "quickbooks" or "xero", got "sage"'
    )


def test_invalid_toml_gives_line_and_column(home: Path) -> None:
    write(home, "connectors/x.toml", 'platform = "xero"\n\n[oauth]\nclient_id ==\n')
    [line] = problems(home)
    assert line.startswith("connectors/x.toml: line 4, column 12: invalid TOML: ")
    write(home, "connectors/x.toml", 'platform = "xero"\ndisplay_name = [\n')
    [line] = problems(home)
    assert line.startswith("connectors/x.toml: at the end of the file: invalid TOML: ")


def test_a_file_that_is_not_utf8(home: Path) -> None:
    (home / "connectors").mkdir()
    (home / "connectors" / "acme.toml").write_bytes(b'display_name = "\xff"\n')
    assert problems(home) == ["connectors/acme.toml: is not UTF-8 text"]


@pytest.mark.parametrize("where", ["top", "oauth"])
def test_an_inline_secret_is_refused_without_being_echoed(home: Path, where: str) -> None:
    data = merged(oauth={"client_secret_env": None})
    if where == "top":
        data["client_secret"] = SECRET
    else:
        data["oauth"]["client_secret"] = SECRET
    write(home, "connectors/acme.toml", toml(data))
    [line] = problems(home)  # the missing reference is not reported a second time
    key = "client_secret" if where == "top" else "oauth.client_secret"
    assert line.startswith(f"connectors/acme.toml: {key}: a secret does not belong")
    assert "client_secret_env" in line and "client_secret_file" in line
    assert SECRET not in line


def test_values_of_secret_keys_are_never_echoed(home: Path) -> None:
    # A secret pasted where a variable's name or a path belongs.
    connector_file(home, oauth={"client_secret_env": SECRET})
    connector_file(home, "beta", oauth={"client_secret_env": None, "client_secret_file": ""})
    write(home, "connectors/gamma.toml", toml(merged(oauth=None)) + f'oauth = "{SECRET}"\n')
    write(home, "connectors/delta.toml", toml(BASE) + f'secret = "{SECRET}"\n')
    text = "\n".join(problems(home))
    assert len(text.splitlines()) == 4
    assert SECRET not in text


def test_every_problem_of_every_file_together(home: Path) -> None:
    write(home, "config/arsync.toml", toml({"store": {"urll": "x"}, "sync": {"workers": 0}}))
    connector_file(home, "alpha", platform="sage", sync={"interval": "5"})
    connector_file(home, "beta")  # valid: absent from the report
    write(home, "connectors/gamma.toml", "platform = \n")
    write(home, "connectors/Delta.toml", toml(BASE))
    assert [line.split(": ")[0:2] for line in problems(home)] == [
        ["config/arsync.toml", "store.urll"],
        ["config/arsync.toml", "sync.workers"],
        ["connectors/Delta.toml", "the file name must be lowercase letters, digits and hyphens, "
         "starting with a letter or digit (e.g. acme-books.toml)"],
        ["connectors/alpha.toml", "platform"],
        ["connectors/alpha.toml", "sync.interval"],
        ["connectors/gamma.toml", "line 1, column 12"],
    ]  # fmt: skip


def test_loading_writes_nothing(home: Path) -> None:
    shutil.copy(ROOT / "config" / "arsync.toml", write(home, "config/arsync.toml", ""))
    connector_file(home, "acme")
    connector_file(home, "fileref", oauth={"client_secret_env": None, "client_secret_file": "s"})

    def snapshot() -> dict[str, tuple[int, int, bytes]]:
        return {
            str(p.relative_to(home)): (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(home.rglob("*"))
            if p.is_file()
        } | {str(p.relative_to(home)): (0, 0, b"") for p in home.rglob("*") if p.is_dir()}

    before = snapshot()
    config = load(home)
    config.settings.store_url()
    config.settings.key_location()
    config.connector("acme").client_secret()
    assert snapshot() == before
    connector_file(home, "broken", platform="sage")
    before = snapshot()
    problems(home)
    assert snapshot() == before
    assert not (home / "state").exists() and not (home / "secrets").exists()


def test_unknown_connector_is_named_with_the_configured_ones(home: Path) -> None:
    connector_file(home, "acme")
    connector_file(home, "beta")
    with pytest.raises(ConfigError, match=r"no connector named 'gamma'.*acme, beta"):
        load(home).connector("gamma")


def test_home_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load(tmp_path / "nowhere")


# --- client secrets --------------------------------------------------------------------------


def secret_file_connector(home: Path, path: str) -> ConnectorConfig:
    connector_file(home, oauth={"client_secret_env": None, "client_secret_file": path})
    return only_connector(home)


def test_client_secret_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connector_file(home)
    monkeypatch.delenv(SECRET_ENV)
    connector = only_connector(home)  # loads with the variable unset: it is read only on use
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert connector.client_secret() == SECRET
    monkeypatch.setenv(SECRET_ENV, "")
    with pytest.raises(ConfigError) as caught:
        connector.client_secret()
    assert str(caught.value) == (
        f"connectors/acme.toml: oauth.client_secret_env: the environment variable {SECRET_ENV} "
        "is empty"
    )
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ConfigError, match=f"{SECRET_ENV} is not set"):
        connector.client_secret()


def test_client_secret_from_a_private_file(home: Path) -> None:
    path = write(home, "secrets/acme", SECRET + "\n")
    path.chmod(0o600)
    # relative to home, and absolute
    assert secret_file_connector(home, "secrets/acme").client_secret() == SECRET
    assert secret_file_connector(home, str(path)).client_secret() == SECRET


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "does not exist"),
        ("open", "is open to group or others (mode 0644); make it private with chmod 600"),
        ("group", "is open to group or others (mode 0640)"),
        ("empty", "is empty"),
        ("directory", "is not a regular file"),
        ("fifo", "is not a regular file"),
    ],
)
def test_client_secret_file_problems(home: Path, setup: str, expected: str) -> None:
    path = home / "secrets" / "acme"
    path.parent.mkdir()
    if setup == "directory":
        path.mkdir()
    elif setup == "fifo":
        os.mkfifo(path, 0o600)
    elif setup != "missing":
        path.write_text("" if setup == "empty" else SECRET)
        path.chmod({"open": 0o644, "group": 0o640}.get(setup, 0o600))
    connector = secret_file_connector(home, "secrets/acme")
    with pytest.raises(ConfigError) as caught:
        connector.client_secret()
    message = str(caught.value)
    assert message.startswith(f"connectors/acme.toml: oauth.client_secret_file: {path}")
    assert expected in message
    assert SECRET not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_secret_file(home: Path) -> None:
    path = write(home, "secrets/acme", SECRET)
    path.chmod(0o000)
    connector = secret_file_connector(home, str(path))
    with pytest.raises(ConfigError, match=r"cannot read .*: Permission denied") as caught:
        connector.client_secret()
    assert SECRET not in str(caught.value)


def test_a_systemd_credential_may_be_group_readable(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, "creds/acme-secret", SECRET)
    path.chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(path.parent))
    assert secret_file_connector(home, str(path)).client_secret() == SECRET


def test_a_loaded_config_holds_no_secret(home: Path) -> None:
    connector_file(home)
    config: Config = load(home)
    assert SECRET not in repr(config) and SECRET not in str(config.connector("acme"))


def test_a_secret_path_through_a_file(home: Path) -> None:
    write(home, "secrets/acme", SECRET).chmod(0o600)
    connector = secret_file_connector(home, "secrets/acme/inner")
    with pytest.raises(ConfigError, match=r"cannot read .*: Not a directory") as caught:
        connector.client_secret()
    assert SECRET not in str(caught.value)


def test_a_relative_home_gives_absolute_paths(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(home.parent)
    config = load(Path("home"))
    assert config.home == home
    assert config.settings.store_url() == f"sqlite:///{home}/state/arsync.db"
