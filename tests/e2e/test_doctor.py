"""`arsync doctor` against a corpus of broken installs, each a home of its own linked to a real
sandbox over loopback HTTP, the command run as a process: every finding is asserted with its fix,
and a healthy install exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from arsync.config import load
from arsync.connect import Connection, store_connection
from arsync.connectors.oauth import TokenRecord, TokenVault, load_key
from arsync.domain import CompanyInfo
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS
from arsync.sandbox.mail import MailSink
from arsync.sandbox.server import free_port
from arsync.store import open_store
from arsync.store.engine import head_revision
from tests.e2e.test_sync_e2e import connect
from tests.support import clock_of, make_sandbox

ARSYNC = [sys.executable, "-m", "arsync"]
SECRETS = {"QBO_SECRET": "sandbox-qbo-secret", "XERO_SECRET": "sandbox-xero-secret"}
CONNECTORS = {"books-qbo": "qbo", "books-xero": "xero"}


@pytest.fixture
def sandbox() -> Sandbox:
    """Small books: the doctor reads one company record per connector, not the books."""
    return make_sandbox(customers=5, invoices=20)


# -- a home, linked ---------------------------------------------------------------------------


def write_home(
    home: Path,
    server_url: str,
    *,
    follow_sandbox_clock: bool = True,
    mail: str = "",
    xero_secret_file: bool = False,
    store_url: str | None = None,
) -> None:
    """An arsync home with a connector per platform on the sandbox; arsync follows the
    sandbox's frozen clock unless told not to, so a test means the same on any day."""
    (home / "config").mkdir(parents=True)
    (home / "connectors").mkdir()
    settings = '[log]\nformat = "json"\n'
    if store_url is not None:
        settings += f'[store]\nurl = "{store_url}"\n'
    if follow_sandbox_clock:
        settings += f'[clock]\nsandbox = "{server_url}"\n'
    (home / "config" / "arsync.toml").write_text(settings + mail)
    for name, platform in CONNECTORS.items():
        client = DEMO_CLIENTS[platform]
        if platform == "xero" and xero_secret_file:
            secret = 'client_secret_file = "secrets/xero.secret"'
            (home / "secrets").mkdir(mode=0o700, exist_ok=True)
            path = home / "secrets" / "xero.secret"
            path.write_text(client.client_secret + "\n")
            path.chmod(0o600)
        else:
            secret = f'client_secret_env = "{platform.upper()}_SECRET"'
        (home / "connectors" / f"{name}.toml").write_text(
            f'platform = "{"quickbooks" if platform == "qbo" else "xero"}"\n'
            f'display_name = "{name}"\n'
            f'timezone = "Europe/London"\n'
            f'[oauth]\nclient_id = "{client.client_id}"\n{secret}\n'
            f'[endpoints]\nsandbox = "{server_url}"\n'
        )


def link(home: Path, sandbox: Sandbox) -> None:
    """What `arsync connect` stores for both connectors, done in-process (the consent itself
    is exercised once, by the healthy install): the key made, the link and its tokens."""
    settings = load(home).settings
    fernet = load_key(settings.key_location(), create=True)
    store = open_store(settings.store_url(), clock_of(sandbox))
    try:
        for name, platform in CONNECTORS.items():
            tenant = next(t for t in sandbox.tenants() if t.platform == platform)
            issued = sandbox.connect(platform, tenant.tenant_id)
            now = sandbox.clock.now()
            tokens = TokenRecord(
                access_token=issued.access_token,
                refresh_token=issued.refresh_token,
                access_expires_at=now + timedelta(seconds=issued.expires_in),
                refresh_expires_at=now + timedelta(seconds=issued.refresh_expires_in),
                refreshed_at=now,
                connected_at=now,
                scope=" ".join(issued.scopes),
            )
            found = Connection(
                platform, tenant.tenant_id, CompanyInfo(tenant.name), tokens, "http://127.0.0.1/cb"
            )
            store_connection(store, TokenVault(store, fernet), name, platform, found)
    finally:
        store.close()


@pytest.fixture
def home(tmp_path: Path, sandbox: Sandbox, server: SandboxServer) -> Path:
    """A linked home on the sandbox's clock."""
    made = tmp_path / "home"
    write_home(made, server.url)
    link(made, sandbox)
    return made


def run_doctor(
    home: Path, *args: str, as_json: bool = True, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`arsync doctor` as a process. No systemd unit and no disk threshold unless a test asks,
    so the machine running the tests does not matter; `env` sets (or, with None, removes)
    environment variables."""
    if "--systemd-unit" not in args:
        args = (*args, "--systemd-unit", str(home.parent / "no-such-unit" / "arsync.service"))
    if "--min-free-mb" not in args:
        args = (*args, "--min-free-mb", "0", "--min-free-percent", "0")
    environment = {**os.environ, **SECRETS, "COLUMNS": "200", "NO_COLOR": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [*ARSYNC, "doctor", *(["--json"] if as_json else []), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def doctor(
    home: Path, *args: str, env: dict[str, str | None] | None = None
) -> tuple[int, dict[str, Any]]:
    """`arsync doctor --json`: its exit code and its report."""
    done = run_doctor(home, *args, env=env)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def found(report: dict[str, Any], check: str, connector: str | None = None) -> list[dict[str, Any]]:
    return [
        f
        for f in report["findings"]
        if f["check"] == check and (connector is None or f["connector"] == connector)
    ]


def one(report: dict[str, Any], check: str, connector: str | None = None) -> dict[str, Any]:
    [finding] = found(report, check, connector)
    return finding


def not_ok(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f["check"], f["status"], f["said"]) for f in report["findings"] if f["status"] != "ok"]


def requests(sandbox: Sandbox, platform: str) -> int:
    return sandbox.ledger.count(platform=platform, kind="request")


# -- healthy ----------------------------------------------------------------------------------


def test_a_healthy_install_exits_0_with_every_check_ok(
    tmp_path: Path, sandbox: Sandbox, server: SandboxServer
) -> None:
    with MailSink() as sink:
        home = tmp_path / "home"
        mail = (
            f'[mail]\nhost = "127.0.0.1"\nport = {sink.port}\nsecurity = "none"\n'
            'from_address = "accounts@firm.example"\n'
        )
        write_home(home, server.url, mail=mail, xero_secret_file=True)
        # the real consent, as a person does it
        assert "connected to" in connect(home, "books-qbo")
        assert "connected to" in connect(home, "books-xero")
        calls = {p: requests(sandbox, p) for p in ("qbo", "xero")}
        code, report = doctor(home)
        # exactly one call to each platform
        assert {p: requests(sandbox, p) - n for p, n in calls.items()} == {"qbo": 1, "xero": 1}
        # the same for a person: aligned lines, and the verdict last
        done = run_doctor(home, as_json=False)
        assert sink.received() == []  # the mail server was greeted, never sent to
    assert code == 0, not_ok(report)
    assert report["healthy"] is True and report["problems"] == report["warnings"] == 0
    assert not_ok(report) == []
    checks = {f["check"] for f in report["findings"]}
    assert checks >= {
        "config",
        "store",
        "store.schema",
        "store.integrity",
        "store.files",
        "store.folder",
        "key",
        "disk",
        "connector.secret",
        "connector.templates",
        "connector.link",
        "connector.api",
        "connector.horizon",
        "clock",
        "mail",
        "systemd",
    }
    for name, platform in CONNECTORS.items():
        tenant = next(t for t in sandbox.tenants() if t.platform == platform)
        assert one(report, "connector.api", name)["said"] == (
            f"answered: {tenant.name} (one authenticated call)"
        )
        assert "in step with" in one(report, "clock", name)["said"]
        assert "the link holds until" in one(report, "connector.horizon", name)["said"]
    assert "nothing was sent" in one(report, "mail")["said"]
    assert one(report, "systemd")["said"].startswith("not installed (optional)")
    assert (
        one(report, "store.schema")["said"] == f"at revision {head_revision()}, this arsync's own"
    )
    assert one(report, "store.integrity")["said"] == "SQLite's integrity check: ok"

    assert done.returncode == 0, done.stdout + done.stderr
    assert "  ok       configuration" in done.stdout
    assert done.stdout.rstrip().endswith("All good: nothing to fix.")


# -- permissions ------------------------------------------------------------------------------


def test_private_files_open_to_others_are_problems_with_chmod_fixes(
    tmp_path: Path, sandbox: Sandbox, server: SandboxServer
) -> None:
    home = tmp_path / "home"
    write_home(home, server.url, xero_secret_file=True)
    link(home, sandbox)
    key = home / "secrets" / "arsync.key"
    db = home / "state" / "arsync.db"
    secret = home / "secrets" / "xero.secret"
    for path in (key, db, secret):
        path.chmod(0o644)
    calls = {p: requests(sandbox, p) for p in ("qbo", "xero")}

    code, report = doctor(home)
    assert code == 1
    key_finding = one(report, "key")
    assert key_finding["status"] == "problem"
    assert "can be read by other users (mode 0644)" in key_finding["said"]
    assert key_finding["fix"] == f"chmod 600 {key}"
    files = one(report, "store.files")
    assert files["status"] == "problem" and f"{db} (mode 0644)" in files["said"]
    assert files["fix"] == f"chmod 600 {db}"
    xero_secret = one(report, "connector.secret", "books-xero")
    assert xero_secret["status"] == "problem" and "mode 0644" in xero_secret["said"]
    assert xero_secret["fix"] == f"chmod 600 {secret}"
    # nothing is called with a key arsync refuses: said, with what to fix first
    api = one(report, "connector.api", "books-qbo")
    assert api["status"] == "warning" and "token key cannot be used" in api["said"]
    assert {p: requests(sandbox, p) for p in ("qbo", "xero")} == calls

    # a folder others may write into is a problem too
    db.parent.chmod(0o777)
    _, report = doctor(home)
    folder = one(report, "store.folder")
    assert folder["status"] == "problem" and "mode 0777" in folder["said"]
    assert folder["fix"] == f"chmod 700 {db.parent}"

    # each fix, done as said, clears its finding
    for path in (key, db, secret):
        path.chmod(0o600)
    db.parent.chmod(0o700)
    code, report = doctor(home)
    assert code == 0, not_ok(report)


# -- tokens -----------------------------------------------------------------------------------


def test_a_revoked_grant_is_a_dead_link_and_then_a_reconnect_needed_state(
    home: Path, sandbox: Sandbox
) -> None:
    qbo = next(t for t in sandbox.tenants() if t.platform == "qbo")
    sandbox.revoke_grants("qbo", qbo.tenant_id)

    code, report = doctor(home)
    assert code == 1
    api = one(report, "connector.api", "books-qbo")
    assert api["status"] == "problem"
    assert api["said"].startswith("the link is dead:") and "refused" in api["said"]
    assert api["fix"] == "run `arsync connect books-qbo`"
    # the other connector is untouched by it
    assert one(report, "connector.api", "books-xero")["status"] == "ok"
    # the 401 carried the platform's Date all the same: the clock was still measured
    assert one(report, "clock", "books-qbo")["status"] == "ok"

    # as any command would, the refusal marked the connector: the next doctor says so at once,
    # without calling the platform again
    calls = requests(sandbox, "qbo")
    code, report = doctor(home)
    assert code == 1
    state = one(report, "connector.link", "books-qbo")
    assert state["status"] == "problem" and state["said"].startswith("needs reconnecting:")
    assert state["fix"] == "run `arsync connect books-qbo`"
    assert found(report, "connector.api", "books-qbo") == []
    assert requests(sandbox, "qbo") == calls


def test_a_link_unused_past_its_horizon_has_lapsed(home: Path, sandbox: Sandbox) -> None:
    # 61 days on: Xero's refresh token died after 60 days unused; QuickBooks' lives 100
    sandbox.clock.advance(timedelta(days=61))
    calls = requests(sandbox, "xero")
    code, report = doctor(home)
    assert code == 1
    lapsed = one(report, "connector.horizon", "books-xero")
    assert lapsed["status"] == "problem" and lapsed["said"].startswith("the link lapsed on ")
    assert lapsed["fix"] == "run `arsync connect books-xero`"
    api = one(report, "connector.api", "books-xero")
    assert api["status"] == "warning" and api["said"].startswith("not called: the link lapsed")
    assert requests(sandbox, "xero") == calls
    assert one(report, "connector.horizon", "books-qbo")["status"] == "ok"
    assert one(report, "connector.api", "books-qbo")["status"] == "ok"


def test_a_link_close_to_its_horizon_is_a_warning(home: Path, sandbox: Sandbox) -> None:
    sandbox.clock.advance(timedelta(days=40))  # Xero: 20 days left of 60
    code, report = doctor(home)
    assert code == 0, not_ok(report)
    close = one(report, "connector.horizon", "books-xero")
    assert close["status"] == "warning"
    assert close["said"].startswith("the link was 20 days from lapsing (60 days unused")
    # the doctor's own call refreshed the stale access token, which renewed the link: said
    assert "this check's call just refreshed it" in close["said"]
    assert close["fix"].startswith("keep arsync running: `arsync run` (the service) refreshes")
    assert "`arsync sync books-xero`" in close["fix"]
    assert one(report, "connector.horizon", "books-qbo")["status"] == "ok"


# -- the clock --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ahead", "status"), [(timedelta(minutes=10), "problem"), (None, "ok")])
def test_the_machines_clock_against_the_platforms_date_header(
    tmp_path: Path, ahead: timedelta | None, status: str
) -> None:
    # arsync on this machine's clock; the platforms' clocks (the sandbox's, which stamps each
    # reply's Date from its own) ten minutes ahead of it, or in step with it
    start = datetime.now(UTC) + (ahead or timedelta(0))
    sandbox = make_sandbox(customers=5, invoices=20, start=start, frozen=False)
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, follow_sandbox_clock=False)
        link(home, sandbox)
        code, report = doctor(home)
        for name in CONNECTORS:
            clock = one(report, "clock", name)
            assert clock["status"] == status, clock
            if status == "problem":
                assert clock["said"].startswith("this machine's clock is 10 min behind")
                assert clock["fix"].startswith(
                    "turn on time synchronisation: `timedatectl set-ntp true`"
                )
            else:
                assert "in step with" in clock["said"]
        assert code == (1 if status == "problem" else 0), not_ok(report)
        if ahead is not None:
            # the limit is a parameter: ten minutes are tolerated when it says so
            code, report = doctor(home, "--max-skew", "900")
            assert {one(report, "clock", n)["status"] for n in CONNECTORS} == {"ok"}


# -- the store --------------------------------------------------------------------------------


def downgrade(db: Path) -> str:
    """The store taken one schema revision back, as an older arsync left it."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from arsync import alembic_dir

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(alembic_dir()))
    previous = ScriptDirectory.from_config(cfg).get_revision(head_revision()).down_revision
    assert isinstance(previous, str)
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, previous)
    finally:
        engine.dispose()
    return previous


def test_a_store_behind_this_arsync_says_what_upgrades_it(home: Path) -> None:
    db = home / "state" / "arsync.db"
    previous = downgrade(db)
    code, report = doctor(home)
    assert code == 1
    schema = one(report, "store.schema")
    assert schema["status"] == "problem"
    assert schema["said"].startswith(f"at revision {previous}, behind this arsync's")
    assert schema["fix"] == (
        "run `arsync status`: any arsync command that opens the store (status, sync, run, "
        f"plan, connect) upgrades it, first copying it to arsync.db.before-{previous}; the "
        "doctor never does"
    )
    # the doctor changed nothing: still behind
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (previous,)
    # connectors wait for the store
    assert one(report, "connector.link", "books-qbo")["status"] == "warning"

    # the fix, done as said
    done = subprocess.run(
        [*ARSYNC, "status", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **SECRETS},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (db.parent / f"arsync.db.before-{previous}").exists()
    code, report = doctor(home)
    assert code == 0, not_ok(report)


def test_a_store_from_a_newer_arsync_is_refused_in_words(home: Path) -> None:
    db = home / "state" / "arsync.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    code, report = doctor(home)
    assert code == 1
    schema = one(report, "store.schema")
    assert schema["status"] == "problem"
    assert schema["said"] == (
        "at revision 9999_future, which this arsync does not know: this arsync is older than "
        "the store, which a newer arsync wrote"
    )
    assert schema["fix"].startswith("upgrade arsync to the version that last used this store")


def test_a_damaged_store_is_reported_with_what_to_do(home: Path) -> None:
    db = home / "state" / "arsync.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'connectors'"
        ).fetchone()
    # the connectors table's page scrambled behind its header, as a failing disk leaves one:
    # the file still opens, and only SQLite's integrity check finds it
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size + 8
    data[start : root * page_size] = bytes((i * 7 + 3) % 256 for i in range(page_size - 8))
    db.write_bytes(bytes(data))
    code, report = doctor(home)
    assert code == 1
    assert one(report, "store")["status"] == "ok"  # it opens
    damage = one(report, "store.integrity")
    assert damage["status"] == "problem"
    assert damage["said"].startswith("SQLite's integrity check found damage: ")
    assert damage["fix"].startswith("restore it from a backup")
    # nothing is read through a damaged store: each connector waits for it
    link_found = one(report, "connector.link", "books-qbo")
    assert link_found["said"] == "not checked: the store is not usable (see above)"

    # a file that is not a database at all: said at once
    db.write_bytes(b"not a database, truly" * 100)
    code, report = doctor(home)
    assert code == 1
    store = one(report, "store")
    assert store["status"] == "problem" and "is damaged" in store["said"]
    assert store["fix"].startswith("restore it from a backup")


# -- configuration ----------------------------------------------------------------------------


def test_a_broken_configuration_lists_every_problem_with_its_file_and_key(home: Path) -> None:
    path = home / "connectors" / "books-qbo.toml"
    path.write_text(path.read_text() + "[sync]\ninterval = 10\nsweep_every = 5\n")
    # a connector file that does not load must not hide the key's permissions
    (home / "secrets" / "arsync.key").chmod(0o640)
    code, report = doctor(home)
    assert code == 1
    problems = {(f["said"], f["fix"]) for f in found(report, "config")}
    assert (
        "connectors/books-qbo.toml: sync.interval: must be at least 60 seconds, got 10",
        "edit connectors/books-qbo.toml: sync.interval",
    ) in problems
    assert any(
        said.startswith("connectors/books-qbo.toml: sync.sweep_every: unknown key")
        and fix == "edit connectors/books-qbo.toml: sync.sweep_every"
        for said, fix in problems
    )
    assert one(report, "key")["fix"] == f"chmod 600 {home / 'secrets' / 'arsync.key'}"
    assert found(report, "connector.api") == []  # connectors wait for their files to load


def test_an_unreadable_settings_file_is_a_finding_not_a_crash(home: Path) -> None:
    (home / "config" / "arsync.toml").write_text("[store\nurl = 1\n")
    code, report = doctor(home)
    assert code == 1
    bad = found(report, "config")
    assert bad[0]["status"] == "problem"
    assert bad[0]["said"].startswith("config/arsync.toml: line 1, column 7: invalid TOML")
    assert bad[0]["fix"] == "edit config/arsync.toml: line 1, column 7"
    waiting = [f for f in bad if f["title"] == "other checks"]
    assert waiting and waiting[0]["status"] == "warning"
    assert found(report, "store") == []


# -- mail, disk, systemd ----------------------------------------------------------------------


def test_an_unreachable_mail_server(
    tmp_path: Path, sandbox: Sandbox, server: SandboxServer
) -> None:
    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    home = tmp_path / "home"
    mail = (
        f'[mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'from_address = "accounts@firm.example"\ntimeout = "5s"\n'
    )
    write_home(home, server.url, mail=mail)
    link(home, sandbox)
    code, report = doctor(home)
    assert code == 1
    finding = one(report, "mail")
    assert finding["status"] == "problem"
    assert finding["said"].startswith(f"cannot connect to the mail server 127.0.0.1:{port}: ")
    assert finding["fix"] == (
        "check config/arsync.toml: mail.host and mail.port, and that the server is up and "
        "reachable from this machine"
    )
    assert [f for f in not_ok(report) if f[0] != "mail"] == []


class _Accepting:
    """An aiosmtpd handler that accepts every message (none is sent by the doctor)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _firm_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and (
        auth_data.login,
        auth_data.password,
    ) == (b"firm", b"right")
    return AuthResult(success=good, handled=False)


@pytest.fixture
def login_server() -> Iterator[int]:
    """A mail server on loopback that offers a login (AUTH) and takes only firm/right."""
    port = free_port()
    controller = Controller(
        _Accepting(),
        hostname="127.0.0.1",
        port=port,
        server_hostname="mail.localhost",
        authenticator=_firm_login,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.mark.parametrize("password", [None, "wrong", "right"])
def test_the_mail_login_as_configured(
    tmp_path: Path,
    sandbox: Sandbox,
    server: SandboxServer,
    login_server: int,
    password: str | None,
) -> None:
    home = tmp_path / "home"
    mail = (
        f'[mail]\nhost = "127.0.0.1"\nport = {login_server}\nsecurity = "none"\n'
        'username = "firm"\npassword_env = "ARSYNC_TEST_MAIL_PASSWORD"\n'
        'from_address = "accounts@firm.example"\n'
    )
    write_home(home, server.url, mail=mail)
    link(home, sandbox)
    code, report = doctor(home, env={"ARSYNC_TEST_MAIL_PASSWORD": password})
    finding = one(report, "mail")
    where = f"127.0.0.1:{login_server}"
    if password is None:
        assert code == 1
        assert finding["said"] == (
            "config/arsync.toml: mail.password_env: the environment variable "
            "ARSYNC_TEST_MAIL_PASSWORD is not set"
        )
        assert finding["fix"] == "edit config/arsync.toml: mail.password_env"
    elif password == "wrong":
        assert code == 1
        assert finding["said"].startswith(f"{where} refused the login of firm: 535 ")
        assert finding["fix"] == (
            "check config/arsync.toml: mail.username, and the password that mail.password_env names"
        )
    else:
        assert code == 0, not_ok(report)
        assert finding["said"] == (
            f"{where} answered (no encryption (this machine); login as firm accepted); nothing "
            "was sent"
        )


def test_a_login_the_mail_server_does_not_offer(
    tmp_path: Path, sandbox: Sandbox, server: SandboxServer
) -> None:
    with MailSink() as sink:  # the sandbox's own mail server offers no AUTH
        home = tmp_path / "home"
        mail = (
            f'[mail]\nhost = "127.0.0.1"\nport = {sink.port}\nsecurity = "none"\n'
            'username = "firm"\npassword_env = "QBO_SECRET"\n'
            'from_address = "accounts@firm.example"\n'
        )
        write_home(home, server.url, mail=mail)
        link(home, sandbox)
        code, report = doctor(home)
    assert code == 1
    finding = one(report, "mail")
    assert (
        finding["said"]
        == f"mail server 127.0.0.1:{sink.port}: offers no login (AUTH) for the username"
    )
    assert finding["fix"].startswith("edit config/arsync.toml: mail.username (remove it if")


def test_low_disk_space_is_a_warning_at_the_thresholds_given(home: Path) -> None:
    code, report = doctor(home, "--min-free-mb", str(1024**3), "--min-free-percent", "0")
    assert code == 0, not_ok(report)  # a warning does not fail the doctor
    disk = one(report, "disk")
    assert disk["status"] == "warning"
    assert "below the comfortable" in disk["said"]
    assert str(home / "state") in disk["said"]
    assert disk["fix"].startswith(f"free space on the disk holding {home / 'state'}")

    code, report = doctor(home, "--min-free-mb", "0", "--min-free-percent", "100")
    assert code == 0
    assert one(report, "disk")["status"] == "warning"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_an_installed_systemd_unit_is_verified(home: Path, tmp_path: Path) -> None:
    unit = tmp_path / "units" / "arsync.service"
    unit.parent.mkdir()
    unit.write_text(
        "[Unit]\nDescription=arsync\n\n[Service]\nType=simple\n"
        f"ExecStart={sys.executable} -m arsync run --once --home {home}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    code, report = doctor(home, "--systemd-unit", str(unit))
    assert code == 0, not_ok(report)
    assert one(report, "systemd")["said"] == f"{unit} is installed and verifies"

    unit.write_text("[Unit]\nDescription=arsync\n\n[Service]\nType=simpel\nExecStart=arsync run\n")
    code, report = doctor(home, "--systemd-unit", str(unit))
    assert code == 1
    bad = one(report, "systemd")
    assert bad["status"] == "problem" and bad["said"].startswith(f"{unit} does not verify: ")
    assert "simpel" in bad["said"]
    assert bad["fix"] == f"edit {unit} as said, then `systemctl daemon-reload`"


def test_a_template_that_names_an_unknown_field(home: Path) -> None:
    templates = home / "config" / "templates"
    templates.mkdir()
    (templates / "note_firm.txt.j2").write_text("{{ stage }} · {{ no_such_field }}\n")
    code, report = doctor(home)
    assert code == 1
    for name in CONNECTORS:
        bad = one(report, "connector.templates", name)
        assert bad["status"] == "problem"
        assert "note_firm.txt.j2" in bad["said"] and "no_such_field" in bad["said"]
        assert bad["fix"].startswith("edit each template named (file: template)")


def test_a_store_on_postgresql_or_sqlite_checked_alike(
    tmp_path: Path, sandbox: Sandbox, server: SandboxServer, db_url: str
) -> None:
    home = tmp_path / "home"
    write_home(home, server.url, store_url=db_url)
    link(home, sandbox)
    code, report = doctor(home)
    assert code == 0, not_ok(report)
    assert (
        one(report, "store.schema")["said"] == f"at revision {head_revision()}, this arsync's own"
    )
    on_postgresql = db_url.startswith("postgresql")
    assert one(report, "store")["said"].startswith(
        "PostgreSQL at " if on_postgresql else "SQLite at "
    )
    # a database server has no file here to keep private, and checks its own pages
    assert bool(found(report, "store.files")) is not on_postgresql
    assert bool(found(report, "store.integrity")) is not on_postgresql
    assert {one(report, "connector.api", n)["status"] for n in CONNECTORS} == {"ok"}
