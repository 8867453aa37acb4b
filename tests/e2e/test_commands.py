"""commands.py in-process over real loopback HTTP: connect, sync and status as the CLI runs them,
with what they write, refuse and print; and the CLI's answers to a damaged store."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from arsync import commands
from arsync.config import Config, load
from arsync.errors import ConfigError, StoreDamaged
from arsync.logs import configure
from arsync.sandbox import FaultKind, Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sync import FAILED, OK, PARKED, SKIPPED
from tests.e2e.test_sync_e2e import SECRETS, approve, arsync, write_home
from tests.support import make_sandbox, store_for


@dataclass
class Home:
    sandbox: Sandbox
    server: SandboxServer
    path: Path

    def config(self) -> Config:
        return load(self.path)

    def connect(self, name: str) -> str:
        """`arsync connect NAME --headless`, the person approving in the browser."""
        echoed: list[str] = []
        return commands.connect(
            self.config(),
            name,
            headless=True,
            open_browser=False,
            port=0,
            tenant=None,
            echo=echoed.append,
            read_line=lambda _prompt: approve(next(e for e in echoed if e.startswith("http"))),
            choose=lambda options: options[0],
        )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    configure(level="warning", fmt="json")  # logs to stderr, as the CLI sets them up
    sandbox = make_sandbox(
        customers=20,
        invoices=120,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000, max_page_size=50),
    )
    with SandboxServer(sandbox) as server:
        path = tmp_path / "home"
        write_home(path, server.url, f"sqlite:///{path / 'state' / 'arsync.db'}")
        yield Home(sandbox, server, path)


def test_connect_sync_status_in_process(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    assert "books-xero is connected to" in home.connect("books-xero")
    # the connect's own API calls count against the organisation's limits: written down
    api = [
        e
        for e in home.sandbox.ledger.entries(platform="xero", kind="request")
        if "/connect/" not in (e.endpoint or "")
    ]
    store = store_for(home.sandbox, f"sqlite:///{home.path / 'state' / 'arsync.db'}")
    try:
        with store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            used = tx.usage.since(row.id, home.sandbox.clock.now() - timedelta(days=1))
    finally:
        store.close()
    assert sum(calls for _, calls in used) == len(api) == 2  # the connections, the organisation
    state = home.path / "state"
    for made in (state / "arsync.db", home.path / "secrets" / "arsync.key"):
        assert made.stat().st_mode & 0o777 == 0o600, made

    reports = commands.sync(home.config(), [], full=False, sweep=False, progress=None)
    by_name = {r.name: r for r in reports}
    assert by_name["books-xero"].outcome is OK and by_name["books-xero"].exit_code == 0
    # the other was never connected: skipped, and the exit code says a person must connect it
    assert by_name["books-qbo"].outcome is SKIPPED and by_name["books-qbo"].exit_code == 3
    assert commands.exit_code(reports) == 3
    for name in os.listdir(state):
        if name.startswith("arsync.db"):
            assert (state / name).stat().st_mode & 0o777 == 0o600, name

    capsys.readouterr()
    commands.status(home.config(), ["books-xero"], as_json=True)
    data = json.loads(capsys.readouterr().out)
    (xero,) = data["connectors"]
    assert (xero["health"], xero["complete"]) == ("ok", True)
    # arsync's time is the sandbox's: the JSON's own stamp says so
    assert data["generated_at"] == home.sandbox.clock.now().isoformat()
    commands.status(home.config(), ["books-xero"], as_json=False)
    human = capsys.readouterr().out
    assert "health      ok" in human and "Days overdue" in human and "incomplete" not in human


def test_status_says_plainly_when_the_first_sync_has_not_finished(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    home.connect("books-xero")
    # The day's calls run out after two pages of the first sync: it parks half-way.
    home.sandbox.faults.add(
        kind=FaultKind.DAY_LIMIT, platform="xero", skip=3, params={"retry_after": 30000}
    )
    (report,) = commands.sync(home.config(), ["books-xero"], full=False, sweep=False, progress=None)
    assert report.outcome is PARKED and report.exit_code == 4 and report.pages == 2

    capsys.readouterr()
    commands.status(home.config(), ["books-xero"], as_json=False)
    human = capsys.readouterr().out
    said = " ".join(human.split())
    assert "incomplete" in said and "the first sync has not finished" in said
    assert "Run `arsync sync books-xero` to finish it" in said
    commands.status(home.config(), ["books-xero"], as_json=True)
    assert json.loads(capsys.readouterr().out)["connectors"][0]["complete"] is False


def test_connect_checks_the_store_first_and_writes_nothing_when_it_is_damaged(
    home: Home,
) -> None:
    state = home.path / "state"
    state.mkdir()
    (state / "arsync.db").write_bytes(b"")  # a store truncated to nothing
    with pytest.raises(StoreDamaged, match="empty"):
        home.connect("books-qbo")
    assert not (home.path / "secrets").exists()  # no key file made
    assert (state / "arsync.db").read_bytes() == b""  # and the store left as found
    assert home.sandbox.ledger.count(kind="token_issued") == 0  # no consent was even asked


def test_connect_with_a_key_path_that_is_a_folder_is_a_clear_error(home: Home) -> None:
    (home.path / "secrets" / "arsync.key").mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a folder"):
        home.connect("books-qbo")
    assert not (home.path / "state").exists()
    assert home.sandbox.ledger.count(kind="token_issued") == 0


def test_a_damaged_store_is_exit_6_with_what_to_do_from_status_sync_and_connect(
    home: Home,
) -> None:
    home.connect("books-xero")
    commands.sync(home.config(), ["books-xero"], full=False, sweep=False, progress=None)
    database = home.path / "state" / "arsync.db"
    for leftover in database.parent.glob("arsync.db-*"):
        leftover.unlink()  # a clean copy, as a backup would be
    good = database.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "garbled": good[:8192] + bytes(len(good) - 8192),
        "wrong header": b"Not a database!!" + good[16:],
        "empty": b"",
    }
    for what, damaged in cases.items():
        database.write_bytes(damaged)
        for command in (["status"], ["sync", "books-xero"], ["connect", "books-xero"]):
            done = arsync(home.path, *command)
            said = done.stdout + done.stderr
            assert done.returncode == 6, f"{what} {command}: {said}"
            assert "damaged" in said and "README" in said, f"{what} {command}: {said}"
            assert "Traceback" not in said, f"{what} {command}: {said}"
        assert database.read_bytes() == damaged, what  # never touched


def test_sync_with_no_connectors_configured_says_where_to_add_one(tmp_path: Path) -> None:
    (tmp_path / "connectors").mkdir()
    with pytest.raises(ConfigError, match="no connectors to sync"):
        commands.sync(load(tmp_path), [], full=False, sweep=False, progress=None)
    shutil.rmtree(tmp_path / "connectors")
    with pytest.raises(ConfigError, match="no connector named 'ghost'"):
        commands.sync(load(tmp_path), ["ghost"], full=False, sweep=False, progress=None)


def test_a_broken_secret_fails_its_connector_only(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.connect("books-xero")
    home.connect("books-qbo")
    monkeypatch.delenv("QBO_SECRET")
    reports = {
        r.name: r for r in commands.sync(home.config(), [], full=False, sweep=False, progress=None)
    }
    assert reports["books-qbo"].outcome is FAILED and reports["books-qbo"].exit_code == 2
    assert "QBO_SECRET" in reports["books-qbo"].message
    assert reports["books-xero"].outcome is OK
