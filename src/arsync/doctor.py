"""`arsync doctor`: is this installation healthy, and if not, exactly what to do about it.

Each check gives a `Finding`: ok, a warning (worth doing, nothing is broken yet) or a problem
(something arsync needs is broken or about to break), and for anything not ok the fix: a
command to run, or the file and key to edit. The command exits 0 when there is no problem
(warnings allowed) and 1 when there is at least one.

What is checked, in order:
- the configuration (config/arsync.toml, connectors/*.toml, the policies), every problem with
  its file and key; when config/arsync.toml alone loads, the checks that need only it still run;
- the store: its files' and folder's permissions (SQLite), that it opens, its schema against
  this arsync's (behind: any command that opens the store upgrades it; newer: this arsync is
  older than the store), and SQLite's own `PRAGMA integrity_check`;
- the token key file (private, readable, a key) and the free space where the store lives;
- each enabled connector: its client secret, its templates, whether it is linked to its
  company, one cheap authenticated call through its real coordinator (QuickBooks CompanyInfo,
  Xero Organisation), how long its link holds (the refresh token's horizon), and this
  machine's clock against the platform's, read from that call's HTTP `Date` header;
- the mail server for letters when [mail] is set (connect, EHLO, STARTTLS and login as
  configured; nothing is sent);
- the systemd unit, if one is installed (`systemd-analyze verify`).

The doctor never migrates the store, never sends mail and never writes to a ledger. Its one
API call per connector goes through the same token source as every command, so a stale access
token is refreshed (and the rotated tokens saved) as any command would, and a refresh token the
platform refuses marks the connector "reconnect needed" as any command would.
"""

from __future__ import annotations

import functools
import json
import shutil
import stat
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from arsync.clock import Clock
    from arsync.config import Config, ConnectorConfig, Settings
    from arsync.config.models import MailSettings
    from arsync.runtime import Coordinator, Runtime
    from arsync.store import ConnectorRow, Store, StoredTokens

#: where a system-wide unit is normally installed (`systemctl cat` is asked when it is not there)
SYSTEMD_UNIT = Path("/etc/systemd/system/arsync.service")
UNIT_NAME = "arsync.service"

#: QuickBooks ends every grant five years after consent, however often it is refreshed
QBO_MAX_LIFE = timedelta(days=5 * 365)

NTP_FIX = (
    "turn on time synchronisation: `timedatectl set-ntp true` (then `timedatectl status` should "
    'say "System clock synchronized: yes")'
)


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """One thing checked: how it stands, in words, and for anything not ok the fix."""

    #: a stable name for scripts: "config", "store.schema", "connector.api", "clock"...
    check: str
    #: what a person reads in the first column: "token key", "books-qbo: link"...
    title: str
    status: Status
    said: str
    fix: str | None = None
    connector: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "title": self.title,
            "connector": self.connector,
            "status": self.status.value,
            "said": self.said,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Thresholds:
    """Where a warning or a problem starts (parameters, so a test can trip them at will)."""

    #: free space under which a warning is given, in bytes or as a share of the disk
    min_free_bytes: int = 1024**3
    min_free_percent: float = 10.0
    #: free space under which it is a problem (plus the store's own size, which the copy made
    #: before each schema upgrade needs)
    critical_free_bytes: int = 100 * 1024**2
    #: seconds between this machine's clock and a platform's beyond which it is a problem
    max_skew: float = 60.0
    #: a link lapsing sooner than this is a warning
    horizon_warning: timedelta = timedelta(days=30)


@dataclass
class Report:
    home: Path
    at: datetime
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(f.status is Status.PROBLEM for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.status is Status.WARNING for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        from arsync import __version__

        return {
            "home": str(self.home),
            "checked_at": self.at.isoformat(),
            "version": __version__,
            "healthy": self.problems == 0,
            "problems": self.problems,
            "warnings": self.warnings,
            "findings": [f.to_json() for f in self.findings],
        }


# -- pure helpers ---------------------------------------------------------------------------------


def open_to_others(mode: int) -> bool:
    """Whether a file's mode lets its group or anyone else in at all."""
    return bool(stat.S_IMODE(mode) & 0o077)


def size_said(count: float) -> str:
    """Bytes as a person reads them: "512 MB", "1.5 GB"."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
            if unit == "bytes":
                return f"{count:.0f} bytes"
            return f"{count:.1f} {unit}".replace(".0 ", " ")
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Horizon:
    """When a link lapses unless arsync refreshes it first, and why then."""

    at: datetime
    #: True: a refresh moves it (unused for too long); False: only a new consent does
    rolling: bool
    why: str


#: how long a refresh token lives unused (Xero 60 days; QuickBooks 100 days, rolling)
REFRESH_IDLE = {"xero": timedelta(days=60), "qbo": timedelta(days=100)}


def horizon(
    platform: str,
    *,
    refresh_expires_at: datetime | None,
    refreshed_at: datetime,
    connected_at: datetime,
) -> Horizon:
    """The earliest of what ends a link: the expiry the platform gave with the refresh token,
    the platform's rule for a token left unused, and QuickBooks' five years from consent."""
    idle = REFRESH_IDLE.get(platform, timedelta(days=60))
    found = [Horizon(refreshed_at + idle, True, f"{idle.days} days unused")]
    if refresh_expires_at is not None:
        found.append(Horizon(refresh_expires_at, True, "the refresh token's own expiry"))
    if platform == "qbo":
        found.append(
            Horizon(connected_at + QBO_MAX_LIFE, False, "QuickBooks' five years from consent")
        )
    return min(found, key=lambda h: (h.at, h.rolling))


def skew_seconds(date_header: str | None, seen_at: datetime) -> float | None:
    """How far a platform's clock is ahead of ours (negative: behind), from a reply's `Date`
    header and our clock's reading when the reply arrived; None without a readable Date."""
    if not date_header:
        return None
    try:
        theirs = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=UTC)
    seconds = (theirs - seen_at).total_seconds()
    # Date is given to the whole second: a clock in step reads up to a second either way
    return 0.0 if abs(seconds) <= 1.0 else seconds


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _days(delta: timedelta) -> str:
    from arsync.words import span

    return span(delta.total_seconds())


# -- the checks ----------------------------------------------------------------------------------


class _Doctor:
    """Runs the checks in order, each adding its findings; later checks read what earlier ones
    learnt (whether the store is usable, whether the key is)."""

    def __init__(
        self,
        home: Path,
        *,
        thresholds: Thresholds,
        unit: Path | None,
        clock: Clock | None,
        platform_names: dict[str, str],
    ) -> None:
        self.home = Path(home).absolute()
        self.thresholds = thresholds
        self.unit = unit
        self.given_clock = clock
        self.clock: Clock | None = clock
        self.names = platform_names
        self.findings: list[Finding] = []
        self.config: Config | None = None
        self.settings: Settings | None = None
        self.store: Store | None = None
        #: the store opened at this arsync's schema: connectors can be checked through it
        self.store_current = False
        self.store_path: Path | None = None
        #: no store was ever made here: every connector is simply not connected yet
        self.store_missing = False
        self.store_on_postgresql = False
        self.linked: list[str] = []
        self.key_usable = True

    def add(
        self,
        check: str,
        title: str,
        status: Status,
        said: str,
        fix: str | None = None,
        connector: str | None = None,
    ) -> None:
        self.findings.append(Finding(check, title, status, said, fix, connector))

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> Report:
        try:
            self.guarded("config", "configuration", self.configuration)
            self.guarded("clock", "clock", self.choose_clock)
            if self.clock is None:
                from arsync.clock import SystemClock

                self.clock = SystemClock()
            if self.settings is None:
                self.add(
                    "config",
                    "other checks",
                    Status.WARNING,
                    "the store, the token key, disk space and mail are not checked while "
                    "config/arsync.toml does not load",
                    "fix config/arsync.toml as said above, then run `arsync doctor` again",
                )
            else:
                settings = self.settings
                self.guarded("store", "store", self.store_checks)
                self.guarded("key", "token key", self.key)
                self.guarded("disk", "disk space", self.disk)
                if self.config is not None:
                    self.guarded("connector", "connectors", self.connectors)
                self.guarded("mail", "mail server", lambda: self.mail(settings.mail))
            self.guarded("systemd", "systemd unit", self.systemd)
        finally:
            if self.store is not None:
                self.store.close()
        return Report(self.home, self.clock.now(), self.findings)

    def guarded(self, check: str, title: str, run: Callable[[], None]) -> None:
        """Run one check; whatever it did not foresee becomes a finding, and the next runs."""
        from arsync.errors import Busy

        try:
            run()
        except Busy as err:
            self.add(
                check, title, Status.WARNING, f"not checked: {err}", "run `arsync doctor` again"
            )
        except Exception as err:  # the doctor reports every failure; it must never stop
            self.add(
                check,
                title,
                Status.PROBLEM,
                f"could not be checked: {type(err).__name__}: {_first_line(err)}",
                "correct what the message names, then run `arsync doctor` again",
            )

    # -- configuration ---------------------------------------------------------------------------
    def configuration(self) -> None:
        from arsync.config import SETTINGS_FILE, InvalidConfig, load
        from arsync.errors import ConfigError

        try:
            config = load(self.home)
        except InvalidConfig as err:
            for problem in err.problems:
                where = f"{problem.file}: {problem.key}" if problem.key else problem.file
                self.add("config", "configuration", Status.PROBLEM, str(problem), f"edit {where}")
            self.settings = _settings_alone(self.home)
            return
        except ConfigError as err:
            self.add(
                "config",
                "configuration",
                Status.PROBLEM,
                str(err),
                "give --home (or ARSYNC_HOME) the folder that holds config/ and connectors/",
            )
            return
        self.config, self.settings = config, config.settings
        files = SETTINGS_FILE if (self.home / SETTINGS_FILE).exists() else "the built-in settings"
        count = len(config.connectors)
        said = (
            f"{files}, {count} connector file{'s' if count != 1 else ''} and the policies "
            f"({', '.join(sorted(config.policies))}) load"
        )
        if not config.connectors:
            self.add(
                "config",
                "configuration",
                Status.WARNING,
                said + "; no connector is configured, so arsync has nothing to do",
                "copy a connectors/*.toml.example to connectors/NAME.toml, fill it in, then run "
                "`arsync connect NAME`",
            )
        else:
            self.add("config", "configuration", Status.OK, said)

    def choose_clock(self) -> None:
        """The clock arsync runs on here: the one given, the sandbox's if configured, else the
        system's (the same choice as `arsync.runtime.clock_for`)."""
        from arsync.clock import SystemClock, sandbox_clock
        from arsync.errors import ConfigError

        if self.given_clock is not None:
            return
        if self.config is not None:
            from arsync.runtime import clock_for

            try:
                self.clock = clock_for(self.config)
            except ConfigError as err:
                self.clock_unreadable(err)
            return
        url = self.settings.clock.sandbox if self.settings is not None else None
        if url is None:
            self.clock = SystemClock()
            return
        try:
            self.clock = sandbox_clock(url, where="config/arsync.toml: clock.sandbox")
        except ConfigError as err:
            self.clock_unreadable(err)

    def clock_unreadable(self, err: Exception) -> None:
        from arsync.clock import SystemClock

        self.add(
            "clock",
            "clock",
            Status.PROBLEM,
            f"{err}; the checks below use this machine's clock instead",
            "start the sandbox (`arsync sandbox serve`), or remove [clock] sandbox from "
            "config/arsync.toml",
        )
        self.clock = SystemClock()

    # -- the store -------------------------------------------------------------------------------
    def store_checks(self) -> None:
        from arsync.errors import Busy, ConfigError, StoreDamaged
        from arsync.store import Store
        from arsync.store.engine import (
            RECOVERY_ADVICE,
            check_sqlite_file,
            check_sqlite_place,
            current_revision,
            head_revision,
            open_engine,
            parse_url,
            sqlite_path,
        )

        assert self.settings is not None
        assert self.clock is not None
        url = self.settings.store_url()
        where = "config/arsync.toml: store.url"
        try:
            parsed = parse_url(url)
        except ConfigError as err:
            self.add("store", "store", Status.PROBLEM, str(err), f"edit {where}")
            return
        shown = parsed.render_as_string(hide_password=True)
        path = sqlite_path(parsed)
        self.store_path = path
        self.store_on_postgresql = parsed.get_backend_name() == "postgresql"
        if path is not None:
            try:
                exists = check_sqlite_file(path)
                if not exists:
                    check_sqlite_place(path, create=False)
            except StoreDamaged as err:
                self.add("store", "store", Status.PROBLEM, _damage_said(err), RECOVERY_ADVICE)
                return
            except ConfigError as err:
                self.add("store", "store", Status.PROBLEM, str(err), f"edit {where}")
                return
            if not exists:
                self.store_missing = True
                self.add(
                    "store",
                    "store",
                    Status.WARNING,
                    f"no store yet at {path}: the first `arsync connect` makes it",
                    "run `arsync connect NAME` for each connector",
                )
                return
            self.permissions(path)
        try:
            engine = open_engine(url, migrate=False)
        except StoreDamaged as err:
            self.add("store", "store", Status.PROBLEM, _damage_said(err), RECOVERY_ADVICE)
            return
        except Busy as err:  # e.g. `arsync restore` is putting a backup in place
            self.add(
                "store",
                "store",
                Status.PROBLEM,
                f"the store is busy: {err}",
                "wait for the other arsync command to finish, then run `arsync doctor` again",
            )
            return
        except ConfigError as err:
            self.add(
                "store",
                "store",
                Status.PROBLEM,
                str(err),
                f"check that the database is running and reachable, and {where}",
            )
            return
        self.store = Store(engine, self.clock)
        kind = "SQLite" if path is not None else "PostgreSQL"
        self.add("store", "store", Status.OK, f"{kind} at {shown} opens")
        head = head_revision()
        try:
            current = current_revision(engine)
        except Exception as err:  # a damaged table: said, never raised (the doctor goes on)
            self.add(
                "store.schema", "store schema", Status.PROBLEM, _first_line(err), RECOVERY_ADVICE
            )
            return
        if current == head:
            self.add(
                "store.schema",
                "store schema",
                Status.OK,
                f"at revision {head}, this arsync's own",
            )
            self.store_current = True
        else:
            # the revisions this arsync's migrations know: any other was written by a newer one
            # (probe() would say so too, but it reads a SQLite file immutably and so misses a
            # revision still in the write-ahead log)
            from arsync.store.engine import known_revisions

            newer = current is not None and current not in known_revisions()
            if newer:
                self.add(
                    "store.schema",
                    "store schema",
                    Status.PROBLEM,
                    f"at revision {current}, which this arsync does not know: this arsync is "
                    "older than the store, which a newer arsync wrote",
                    "upgrade arsync to the version that last used this store (never run an "
                    "older arsync on it); or restore the store's backup made before that "
                    "upgrade (<store>.before-<revision>)",
                )
            else:
                copy = (
                    f", first copying it to {path.name}.before-{current}"
                    if path is not None and current is not None
                    else ""
                )
                self.add(
                    "store.schema",
                    "store schema",
                    Status.PROBLEM,
                    f"at revision {current or 'none (no tables yet)'}, behind this arsync's "
                    f"{head}: arsync cannot use it until it is upgraded",
                    "run `arsync status`: any arsync command that opens the store (status, "
                    f"sync, run, plan, connect) upgrades it{copy}; the doctor never does",
                )
        if path is not None and not self.integrity():
            self.store_current = False
        if self.store_current:
            try:
                with self.store.reading() as tx:
                    self.linked = [r.name for r in tx.connectors.all() if r.linked]
            except Exception as err:  # the doctor reports, it does not stop
                self.add("store", "store", Status.PROBLEM, _damage_said(err), RECOVERY_ADVICE)
                self.store_current = False

    def integrity(self) -> bool:
        """SQLite's integrity check; False when it found damage."""
        from arsync.store.engine import RECOVERY_ADVICE

        assert self.store is not None
        # SQLite's own check of every page and index, through the store's reading transaction
        # (no SQL library is imported here). Its place is beside the engine's other checks in
        # store/; until it moves there, this is the one statement the doctor sends itself.
        try:
            with self.store.reading() as tx:
                rows = tx.conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
        except Exception as err:  # a damaged page raises instead of answering
            self.add(
                "store.integrity",
                "store integrity",
                Status.PROBLEM,
                _damage_said(err),
                RECOVERY_ADVICE,
            )
            return False
        said = [str(r[0]) for r in rows]
        if said == ["ok"]:
            self.add(
                "store.integrity", "store integrity", Status.OK, "SQLite's integrity check: ok"
            )
            return True
        # "*** in database main ***" heads the list: the lines after it say what is wrong
        said = [line for line in said if not line.startswith("***")] or said
        shown = "; ".join(said[:3]) + (f" (and {len(said) - 3} more)" if len(said) > 3 else "")
        self.add(
            "store.integrity",
            "store integrity",
            Status.PROBLEM,
            f"SQLite's integrity check found damage: {shown}",
            RECOVERY_ADVICE,
        )
        return False

    def permissions(self, path: Path) -> None:
        """The database and every file beside it that holds its data are private; its folder
        lets no one else in."""
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        files += sorted(path.parent.glob(f"{path.name}.before-*"))
        opened = []
        for file in files:
            try:
                mode = file.stat().st_mode
            except FileNotFoundError:
                continue
            if open_to_others(mode):
                opened.append(f"{file} (mode {stat.S_IMODE(mode):04o})")
        if opened:
            self.add(
                "store.files",
                "store files",
                Status.PROBLEM,
                "the store's data can be read by other users: " + ", ".join(opened),
                "chmod 600 " + " ".join(_quoted(o.rsplit(" (mode", 1)[0]) for o in opened),
            )
        else:
            self.add(
                "store.files",
                "store files",
                Status.OK,
                f"{path} and its companions are private (0600)",
            )
        folder = path.parent
        mode = folder.stat().st_mode
        bits = stat.S_IMODE(mode)
        fix = f"chmod 700 {_quoted(str(folder))}"
        if bits & 0o022:
            self.add(
                "store.folder",
                "store folder",
                Status.PROBLEM,
                f"other users can create and delete files in {folder} (mode {bits:04o}), so "
                "they could replace the store",
                fix,
            )
        elif bits & 0o077:
            self.add(
                "store.folder",
                "store folder",
                Status.WARNING,
                f"other users can look into {folder} (mode {bits:04o}); the store's files "
                "themselves are checked above",
                fix,
            )
        else:
            self.add("store.folder", "store folder", Status.OK, f"{folder} is private ({bits:04o})")

    # -- the token key ---------------------------------------------------------------------------
    def key(self) -> None:
        from arsync.connectors.oauth import load_key
        from arsync.errors import ConfigError

        assert self.settings is not None
        credential = self.settings.secrets.credential
        try:
            path = self.settings.key_location()
        except ConfigError as err:
            self.key_usable = False
            self.add(
                "key",
                "token key",
                Status.WARNING,
                f"not checked: {err}",
                "run `arsync doctor` inside the service's environment (systemd-run with the "
                "unit's LoadCredential=), or check the credential there",
            )
            return
        if credential is None:
            try:
                info = path.lstat()
            except FileNotFoundError:
                if self.linked:
                    self.key_usable = False
                    self.add(
                        "key",
                        "token key",
                        Status.PROBLEM,
                        f"{path} is missing, so the tokens stored for "
                        f"{', '.join(self.linked)} cannot be read",
                        f"restore {path} from a backup; failing that, run `arsync connect NAME` "
                        "again for each connector",
                    )
                elif self.store_missing or self.store_current:
                    self.add(
                        "key",
                        "token key",
                        Status.OK,
                        f"no key yet at {path}: the first `arsync connect` makes it",
                    )
                else:
                    # the store could not be read, so whether it holds tokens is unknown
                    self.add(
                        "key",
                        "token key",
                        Status.WARNING,
                        f"{path} is missing: tokens in the store, if it holds any, cannot be "
                        "read without it",
                        f"restore {path} from a backup if it ever existed",
                    )
                return
            if stat.S_ISREG(info.st_mode) and open_to_others(info.st_mode):
                self.key_usable = False
                self.add(
                    "key",
                    "token key",
                    Status.PROBLEM,
                    f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                    "it decrypts every stored token, and arsync refuses to use it like this",
                    f"chmod 600 {_quoted(str(path))}",
                )
                return
        try:
            load_key(path, credential=credential)
        except ConfigError as err:
            self.key_usable = False
            self.add(
                "key",
                "token key",
                Status.PROBLEM,
                str(err),
                f"restore {path} from a backup, or point config/arsync.toml: secrets.key_file "
                "at the right file",
            )
            return
        shown = f"the systemd credential {credential}" if credential else str(path)
        self.add("key", "token key", Status.OK, f"{shown} is private and holds a key")

    # -- disk ------------------------------------------------------------------------------------
    def disk(self) -> None:
        assert self.settings is not None
        th = self.thresholds
        if self.store_path is not None:
            place, what = self.store_path.parent, "the store"
        elif self.store_on_postgresql:
            place, what = self.settings.home, "arsync's home (the store is on PostgreSQL)"
        else:
            place, what = self.settings.home, "arsync's home"
        while not place.exists() and place != place.parent:
            place = place.parent
        usage = shutil.disk_usage(place)
        percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        size = 0
        if self.store_path is not None:
            for file in (self.store_path, Path(f"{self.store_path}-wal")):
                if file.exists():
                    size += file.stat().st_size
        said = (
            f"{size_said(usage.free)} free ({percent:.0f}% of {size_said(usage.total)}) where "
            f"{what} lives ({place})"
        )
        fix = (
            f"free space on the disk holding {place} (old backups, logs), or move the store to "
            "a bigger disk (config/arsync.toml: store.url)"
        )
        if usage.free < th.critical_free_bytes + size:
            self.add(
                "disk",
                "disk space",
                Status.PROBLEM,
                f"only {said}: arsync needs room to write, and to copy the store aside "
                f"({size_said(size)}) before each upgrade",
                fix,
            )
        elif usage.free < th.min_free_bytes or percent < th.min_free_percent:
            self.add(
                "disk",
                "disk space",
                Status.WARNING,
                f"{said}: below the comfortable {size_said(th.min_free_bytes)} or "
                f"{th.min_free_percent:g}%",
                fix,
            )
        else:
            self.add("disk", "disk space", Status.OK, said)

    # -- connectors ------------------------------------------------------------------------------
    def connectors(self) -> None:
        assert self.config is not None
        runtime: Runtime | None = None
        if self.store is not None and self.store_current:
            from arsync.runtime import Runtime

            runtime = Runtime(self.config, self.store)
        try:
            for name, connector in sorted(self.config.connectors.items()):
                # one connector's surprise is its own finding; the next is still checked
                self.guarded(
                    "connector", name, functools.partial(self.connector, runtime, connector)
                )
        finally:
            if runtime is not None:
                # its coordinators' sessions and governors (which write down the calls made);
                # the store is closed again at the end, which is harmless
                runtime.close()

    def connector(self, runtime: Runtime | None, connector: ConnectorConfig) -> None:
        name = connector.name
        if not connector.enabled:
            self.add(
                "connector.link",
                f"{name}",
                Status.OK,
                f"disabled (connectors/{name}.toml: enabled = false): not checked",
                connector=name,
            )
            return
        secret_ok = self.secret(connector)
        self.templates(connector)
        if runtime is None and self.store_missing:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.PROBLEM,
                "not connected to its company yet",
                f"run `arsync connect {name}`",
                connector=name,
            )
        elif runtime is None:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.WARNING,
                "not checked: the store is not usable (see above)",
                "fix the store first, then run `arsync doctor` again",
                connector=name,
            )
        else:
            self.link(runtime, connector, secret_ok)

    def secret(self, connector: ConnectorConfig) -> bool:
        from arsync.errors import ConfigError

        name = connector.name
        title = f"{name}: client secret"
        file = connector.oauth.client_secret_file
        try:
            connector.client_secret()
        except ConfigError as err:
            env = connector.oauth.client_secret_env
            path = _secret_path(self.home, file)
            if path is not None and "open to group or others" in str(err):
                self.add(
                    "connector.secret",
                    title,
                    Status.PROBLEM,
                    f"{path} can be read by other users ({_mode(path)}), and arsync refuses "
                    "to use it like this",
                    f"chmod 600 {_quoted(str(path))}",
                    connector=name,
                )
                return False
            fix = (
                f"set {env} in the environment arsync runs in (for the service: in its unit "
                "or an EnvironmentFile=), or edit "
                f"{connector.source}: oauth.client_secret_env"
                if env is not None
                else f"put the secret in that file (chmod 600), or edit {connector.source}: "
                "oauth.client_secret_file"
            )
            self.add("connector.secret", title, Status.PROBLEM, str(err), fix, connector=name)
            return False
        where = (
            f"the environment variable {connector.oauth.client_secret_env}"
            if connector.oauth.client_secret_env
            else f"{file} (private)"
        )
        self.add("connector.secret", title, Status.OK, f"read from {where}", connector=name)
        return True

    def templates(self, connector: ConnectorConfig) -> None:
        from arsync.errors import ConfigError
        from arsync.writeback.run import words_for

        assert self.config is not None
        name = connector.name
        try:
            words_for(
                self.config, connector, self.config.policy_of(connector), connector.platform_code
            )
        except ConfigError as err:
            self.add(
                "connector.templates",
                f"{name}: templates",
                Status.PROBLEM,
                str(err),
                "edit each template named (file: template) until it fits, or delete your copy "
                "to use the built-in one",
                connector=name,
            )
            return
        except Exception as err:  # a template that cannot even load: said, not raised
            self.add(
                "connector.templates",
                f"{name}: templates",
                Status.PROBLEM,
                _first_line(err),
                "edit or remove the template named",
                connector=name,
            )
            return
        self.add(
            "connector.templates",
            f"{name}: templates",
            Status.OK,
            f"the notes, letters and call scripts of policy {connector.policy!r} render and fit",
            connector=name,
        )

    def link(self, runtime: Runtime, connector: ConnectorConfig, secret_ok: bool) -> None:
        from arsync.store import ConnectorState

        name = connector.name
        label = self.names.get(connector.platform_code, connector.platform)
        connect = f"run `arsync connect {name}`"
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name(name)
            before = tx.tokens.load(row.id) if row is not None else None
        if row is None or not row.linked:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.PROBLEM,
                f"not connected to its {label} company yet",
                connect,
                connector=name,
            )
            return
        if row.platform != connector.platform_code:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.PROBLEM,
                f"the store holds {name!r} as a {self.names.get(row.platform, row.platform)} "
                f"connector, but {connector.source} says {label}",
                f"edit {connector.source}: platform back, or use a new connector name",
                connector=name,
            )
            return
        if row.status is ConnectorState.RECONNECT_NEEDED:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.PROBLEM,
                f"needs reconnecting: {row.status_reason or label + ' refused its refresh token'}",
                connect,
                connector=name,
            )
            return
        if before is None:
            self.add(
                "connector.link",
                f"{name}: link",
                Status.PROBLEM,
                f"linked to {row.company_name or row.tenant_id}, but no tokens are stored",
                connect,
                connector=name,
            )
            return
        self.add(
            "connector.link",
            f"{name}: link",
            Status.OK,
            f"connected to {row.company_name or row.tenant_id} ({label}); " + self.last_sync(row),
            connector=name,
        )
        if _horizon_of(connector.platform_code, before).at <= self.clock_now():
            # the platform would only refuse the refresh: said once, by the horizon's finding
            self.add(
                "connector.api",
                f"{name}: {label}",
                Status.WARNING,
                "not called: the link lapsed (see its horizon)",
                connect,
                connector=name,
            )
            self.token_horizon(connector, before, None)
            return
        if not secret_ok:
            self.add(
                "connector.api",
                f"{name}: {label}",
                Status.WARNING,
                "not called: the client secret cannot be read (see above)",
                "fix the client secret first",
                connector=name,
            )
        elif not self.key_usable:
            self.add(
                "connector.api",
                f"{name}: {label}",
                Status.WARNING,
                "not called: the token key cannot be used (see above)",
                "fix the token key first",
                connector=name,
            )
        else:
            self.call(runtime, connector, row)
        with runtime.store.reading() as tx:
            after = tx.tokens.load(row.id)
            now_row = tx.connectors.get(row.id)
        if now_row.status is ConnectorState.RECONNECT_NEEDED:
            return  # the call just said so, with its fix
        self.token_horizon(connector, before, after)

    def clock_now(self) -> datetime:
        assert self.clock is not None
        return self.clock.now()

    def last_sync(self, row: ConnectorRow) -> str:
        assert self.clock is not None
        if row.last_sync_ok_at is None:
            return f"no sync has finished yet (run `arsync sync {row.name}`)"
        ago = self.clock.now() - row.last_sync_ok_at
        return f"last good sync {_days(ago)} ago"

    def call(self, runtime: Runtime, connector: ConnectorConfig, row: ConnectorRow) -> None:
        """One cheap authenticated call through the connector's own coordinator, and this
        machine's clock against the platform's from the reply's `Date` header."""
        import httpx

        from arsync.connectors.http import RetryPolicy
        from arsync.errors import (
            ArsyncError,
            AuthError,
            ConfigError,
            PermanentError,
            RateLimited,
            ReconnectNeeded,
            TransientError,
        )

        assert self.clock is not None
        name = connector.name
        label = self.names.get(connector.platform_code, connector.platform)
        title = f"{name}: {label}"
        connect = f"run `arsync connect {name}`"
        clock = self.clock
        replies: list[tuple[str | None, datetime]] = []

        def heard(response: httpx.Response) -> None:
            replies.append((response.headers.get("date"), clock.now()))

        def problem(said: str, fix: str, status: Status = Status.PROBLEM) -> None:
            self.add("connector.api", title, status, said, fix, connector=name)

        try:
            coordinator = runtime.coordinator(name)
            # a doctor wants an answer soon: two tries, short waits (the service keeps its own)
            coordinator.session.retry = RetryPolicy(attempts=2, cap=5.0)
            http = coordinator.session.http
            hooks = dict(http.event_hooks)
            http.event_hooks = {**hooks, "response": [*hooks.get("response", []), heard]}
            company = _ask(coordinator)
        except ReconnectNeeded as err:
            problem(f"the link is dead: {err}", connect)
        except AuthError as err:
            problem(f"{label} refused arsync's credentials: {err}", connect)
        except RateLimited as err:
            problem(
                f"{label} says wait (its rate limits): {err}",
                "nothing to do: arsync waits by itself; run `arsync doctor` again later",
                Status.WARNING,
            )
        except TransientError as err:
            if isinstance(err.__cause__, httpx.TransportError):
                host = httpx.URL(coordinator_base(runtime, name)).host
                problem(
                    f"cannot reach {label}: {err}",
                    f"check this machine's network, DNS and firewall (HTTPS to {host})",
                )
            else:
                problem(
                    f"{label} answered with a failure of its own: {err}",
                    "nothing to fix here if it passes: run `arsync doctor` again later",
                    Status.WARNING,
                )
        except PermanentError as err:
            problem(f"{label} refused the call: {err}", connect)
        except ConfigError as err:
            fix = (
                f"restore the key the tokens were stored with, or {connect}"
                if "cannot be decrypted" in str(err)
                else "correct what the message names, then run `arsync doctor` again"
            )
            problem(str(err), fix)
        except ArsyncError as err:
            problem(f"{label}'s answer could not be used: {err}", connect)
        except Exception as err:  # a doctor reports every failure; it must never stop here
            problem(
                f"unexpected {type(err).__name__}: {_first_line(err)}",
                "report it to arsync's maintainers with this output",
            )
        else:
            self.add(
                "connector.api",
                title,
                Status.OK,
                f"answered: {company} (one authenticated call)",
                connector=name,
            )
        self.skew(connector, replies)

    def skew(self, connector: ConnectorConfig, replies: list[tuple[str | None, datetime]]) -> None:
        name = connector.name
        label = self.names.get(connector.platform_code, connector.platform)
        title = f"{name}: clock"
        dated = [(d, at) for d, at in replies if d]
        if not replies:
            return  # no reply at all: the call's finding says why
        if not dated:
            self.add(
                "clock",
                title,
                Status.WARNING,
                f"not measured: {label}'s reply carried no Date header",
                "nothing to fix in arsync; keep time synchronisation on (`timedatectl set-ntp "
                "true`)",
                connector=name,
            )
            return
        header, seen = dated[-1]
        seconds = skew_seconds(header, seen)
        if seconds is None:
            self.add(
                "clock",
                title,
                Status.WARNING,
                f"not measured: {label}'s Date header is unreadable ({header!r})",
                "nothing to fix in arsync; keep time synchronisation on (`timedatectl set-ntp "
                "true`)",
                connector=name,
            )
            return
        from arsync.words import span

        if seconds == 0:
            said = f"in step with {label}'s clock (to the second its Date header gives)"
        else:
            way = "behind" if seconds > 0 else "ahead of"
            said = f"this machine's clock is {span(seconds)} {way} {label}'s"
        if abs(seconds) > self.thresholds.max_skew:
            self.add(
                "clock",
                title,
                Status.PROBLEM,
                f"{said}: tokens, rate windows and send windows (quiet hours) depend on it "
                f"(more than {self.thresholds.max_skew:g} s is too much)",
                NTP_FIX,
                connector=name,
            )
        else:
            self.add("clock", title, Status.OK, said, connector=name)

    def token_horizon(
        self, connector: ConnectorConfig, before: StoredTokens, after: StoredTokens | None
    ) -> None:
        assert self.clock is not None
        name, platform = connector.name, connector.platform_code
        title = f"{name}: link horizon"
        now = self.clock.now()
        was = _horizon_of(platform, before)
        now_tokens = after or before
        is_ = _horizon_of(platform, now_tokens)
        connect = f"`arsync connect {name}`"
        if is_.at <= now:
            self.add(
                "connector.horizon",
                title,
                Status.PROBLEM,
                f"the link lapsed on {_when(is_.at)} ({is_.why}): the platform no longer "
                "accepts its refresh token",
                f"run {connect}",
                connector=name,
            )
            return
        left = is_.at - now
        refreshed = after is not None and after.refreshed_at > before.refreshed_at
        if not is_.rolling and left < self.thresholds.horizon_warning:
            self.add(
                "connector.horizon",
                title,
                Status.WARNING,
                f"QuickBooks ends this link on {_when(is_.at)} ({is_.why}), in {_days(left)}",
                f"run {connect} before then",
                connector=name,
            )
            return
        was_left = was.at - now
        if was.rolling and was_left < self.thresholds.horizon_warning:
            unused = now - before.refreshed_at
            renewed = (
                f"; this check's call just refreshed it, so it now holds until {_when(is_.at)}"
                if refreshed and is_.at > was.at
                else ""
            )
            self.add(
                "connector.horizon",
                title,
                Status.WARNING,
                f"the link was {_days(was_left)} from lapsing ({was.why}, on {_when(was.at)}): "
                f"arsync had not refreshed it for {_days(unused)}{renewed}",
                "keep arsync running: `arsync run` (the service) refreshes every link unused "
                f"for a week at its next cycle; or run `arsync sync {name}` now",
                connector=name,
            )
            return
        self.add(
            "connector.horizon",
            title,
            Status.OK,
            f"the link holds until {_when(is_.at)} ({is_.why}; last refreshed "
            f"{_days(now - now_tokens.refreshed_at)} ago)",
            connector=name,
        )

    # -- mail ------------------------------------------------------------------------------------
    def mail(self, mail: MailSettings | None) -> None:
        import smtplib
        import ssl

        from arsync.errors import ConfigError, PermanentError
        from arsync.writeback.mail import Mailer

        title = "mail server"
        if mail is None:
            self.add(
                "mail",
                title,
                Status.OK,
                "no [mail] in config/arsync.toml (optional): letters wait in `arsync outbox` for "
                "a person to post them",
            )
            return
        where = f"{mail.host}:{mail.effective_port}"
        keys = "config/arsync.toml: mail.host and mail.port"

        def problem(said: str, fix: str) -> None:
            self.add("mail", title, Status.PROBLEM, said, fix)

        try:
            # the Mailer's own connection: EHLO, STARTTLS and login exactly as a letter gets them
            server = Mailer(mail)._connect()
        except ConfigError as err:
            problem(str(err), f"edit {_config_key(str(err)) or 'config/arsync.toml: [mail]'}")
        except ssl.SSLCertVerificationError as err:
            problem(
                f"{where}: its certificate is not trusted ({err.verify_message})",
                "edit config/arsync.toml: mail.ca_file (the server's CA certificate, PEM)",
            )
        except smtplib.SMTPAuthenticationError as err:
            problem(
                f"{where} refused the login of {mail.username}: {_smtp_said(err)}",
                "check config/arsync.toml: mail.username, and the password that "
                + ("mail.password_env" if mail.password_env else "mail.password_file")
                + " names",
            )
        except PermanentError as err:
            if "STARTTLS" in str(err):
                fix = (
                    'edit config/arsync.toml: mail.security ("tls" if the port speaks TLS at once)'
                )
            else:
                fix = (
                    "edit config/arsync.toml: mail.username (remove it if the server needs no "
                    "login) or mail.port (the server's submission port, which offers one)"
                )
            problem(str(err), fix)
        except smtplib.SMTPResponseException as err:
            problem(f"{where} refused: {_smtp_said(err)}", f"check {keys}")
        except (smtplib.SMTPException, OSError) as err:
            said = "timed out" if isinstance(err, TimeoutError) else _first_line(err)
            problem(
                f"cannot connect to the mail server {where}: {said}",
                f"check {keys}, and that the server is up and reachable from this machine",
            )
        else:
            try:
                server.quit()
            except (smtplib.SMTPException, OSError):
                server.close()
            steps = {"starttls": "STARTTLS", "tls": "TLS", "none": "no encryption (this machine)"}
            said = f"{where} answered ({steps[mail.security]}"
            said += f"; login as {mail.username} accepted" if mail.username else "; no login"
            self.add("mail", title, Status.OK, said + "); nothing was sent")

    # -- systemd ---------------------------------------------------------------------------------
    def systemd(self) -> None:
        title = "systemd unit"
        path = self.unit
        if path is None:
            path = SYSTEMD_UNIT if SYSTEMD_UNIT.exists() else _systemctl_finds(UNIT_NAME)
        if path is None or not path.exists():
            self.add(
                "systemd",
                title,
                Status.OK,
                "not installed (optional): arsync is run by hand or by cron",
            )
            return
        analyze = shutil.which("systemd-analyze")
        fix = f"edit {path} as said, then `systemctl daemon-reload`"
        if analyze is None:
            self.add(
                "systemd",
                title,
                Status.WARNING,
                f"{path} is installed but not verified: systemd-analyze is not on this machine",
                f"run `systemd-analyze verify {path}` where systemd is installed",
            )
            return
        try:
            done = subprocess.run(
                [analyze, "verify", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            self.add(
                "systemd",
                title,
                Status.WARNING,
                f"{path}: systemd-analyze verify did not finish: {_first_line(err)}",
                f"run `systemd-analyze verify {path}` by hand",
            )
            return
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        # verify also speaks of the units this one pulls in: keep what is about this file
        mine = [ln for ln in lines if path.name in ln or str(path) in ln]
        if done.returncode != 0:
            self.add(
                "systemd",
                title,
                Status.PROBLEM,
                f"{path} does not verify: " + " | ".join((mine or lines)[:5]),
                fix,
            )
        elif mine:
            self.add(
                "systemd",
                title,
                Status.WARNING,
                f"{path} verifies with remarks: " + " | ".join(mine[:5]),
                fix,
            )
        else:
            self.add("systemd", title, Status.OK, f"{path} is installed and verifies")


# -- small helpers --------------------------------------------------------------------------------


def _settings_alone(home: Path) -> Settings | None:
    """config/arsync.toml alone when the whole configuration does not load (a broken connector
    file must not hide a key open to everyone); None when it does not load either."""
    from pydantic import ValidationError

    from arsync.config import SETTINGS_FILE, Settings

    path = home / SETTINGS_FILE
    try:
        if not path.exists():
            return Settings().at(home)
        return Settings.model_validate(tomllib.loads(path.read_text("utf-8"))).at(home)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError):
        return None


def _secret_path(home: Path, file: str | None) -> Path | None:
    if file is None:
        return None
    return Path(file) if Path(file).is_absolute() else home / file


def _mode(path: Path) -> str:
    try:
        return f"mode {stat.S_IMODE(path.stat().st_mode):04o}"
    except OSError:
        return "mode unknown"


def _horizon_of(platform: str, tokens: StoredTokens) -> Horizon:
    return horizon(
        platform,
        refresh_expires_at=tokens.refresh_expires_at,
        refreshed_at=tokens.refreshed_at,
        connected_at=tokens.connected_at,
    )


def _ask(coordinator: Coordinator) -> str:
    """The company's name from one cheap call: QuickBooks CompanyInfo, Xero Organisation (a
    platform without its own entry here: its connector's company())."""
    link = coordinator.link
    if link.platform == "qbo":
        from arsync.connectors.quickbooks.client import QuickBooksClient

        info = QuickBooksClient(coordinator.session, link.tenant_id, link.api_base).company_info()
        return str(info.get("CompanyName") or "a company with no name")
    if link.platform == "xero":
        from arsync.connectors.xero.client import XeroClient

        org = XeroClient(coordinator.session, link.tenant_id, link.api_base).organisation()
        return str(org.get("Name") or "an organisation with no name")
    return coordinator.connector.company().name


def coordinator_base(runtime: Runtime, name: str) -> str:
    return runtime.config.connector(name).endpoints().api_base


def _systemctl_finds(unit: str) -> Path | None:
    """Where systemd has the unit (`systemctl cat` starts with "# /path/to/unit"), if anywhere."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        done = subprocess.run(
            [systemctl, "cat", unit], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else ""
    return Path(first[2:].strip()) if first.startswith("# /") else None


def _damage_said(err: BaseException) -> str:
    """A damaged store's message without the advice that follows it (the fix says it)."""
    from arsync.store.engine import RECOVERY_ADVICE

    return (
        str(err).removesuffix(f": {RECOVERY_ADVICE}").replace(". arsync cannot", "; arsync cannot")
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _smtp_said(err: Any) -> str:
    reply = err.smtp_error
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{err.smtp_code} {' '.join(text.split())}"


def _config_key(message: str) -> str | None:
    """ "config/arsync.toml: mail.password_env" from a message that starts so."""
    parts = message.split(": ")
    if len(parts) >= 3 and parts[0].endswith(".toml"):
        return f"{parts[0]}: {parts[1]}"
    return None


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(path)


def diagnose(
    home: Path,
    *,
    thresholds: Thresholds | None = None,
    unit: Path | None = None,
    clock: Clock | None = None,
) -> Report:
    """Every check on the arsync home `home`; never raises for what it finds."""
    from arsync.domain import PLATFORM_NAMES

    doctor = _Doctor(
        home,
        thresholds=thresholds or Thresholds(),
        unit=unit,
        clock=clock,
        platform_names=dict(PLATFORM_NAMES),
    )
    return doctor.run()


# -- output ---------------------------------------------------------------------------------------

_STYLE = {Status.OK: "green", Status.WARNING: "yellow", Status.PROBLEM: "bold red"}
_WORD = {Status.OK: "ok", Status.WARNING: "warning", Status.PROBLEM: "PROBLEM"}


def lines(report: Report) -> Iterator[tuple[Status | None, str]]:
    """The report as plain lines, each with the status that colours it (None: no colour)."""
    from arsync import __version__

    yield None, f"arsync doctor · {report.home} · arsync {__version__} · {_when(report.at)}"
    yield None, ""
    width = max((len(f.title) for f in report.findings), default=0)
    for f in report.findings:
        yield f.status, f"  {_WORD[f.status]:<8} {f.title:<{width}}  {f.said}"
        if f.fix and f.status is not Status.OK:
            yield None, f"  {'':<8} {'':<{width}}  fix: {f.fix}"
    yield None, ""
    if report.problems:
        counts = f"{report.problems} problem{'s' if report.problems != 1 else ''}"
        if report.warnings:
            counts += f" and {report.warnings} warning{'s' if report.warnings != 1 else ''}"
        yield Status.PROBLEM, f"{counts}: do each fix above, then run `arsync doctor` again."
    elif report.warnings:
        yield (
            Status.WARNING,
            f"No problem; {report.warnings} warning{'s' if report.warnings != 1 else ''} "
            "worth a look.",
        )
    else:
        yield Status.OK, "All good: nothing to fix."


def render(report: Report, echo: Callable[[str], None] | None = None) -> None:
    """The report for a person: one aligned line per finding, its fix beneath it."""
    if echo is not None:
        for _, text in lines(report):
            echo(text)
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    for status, text in lines(report):
        shown = escape(text)
        if status is not None:
            shown = f"[{_STYLE[status]}]{shown}[/]"
        # soft wrap: a fix is a command to copy, never broken across lines by the terminal
        console.print(shown, soft_wrap=True)


# -- the command ----------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `arsync` app."""

    @app.command()
    def doctor(
        home: Annotated[
            Path,
            typer.Option(
                "--home",
                envvar="ARSYNC_HOME",
                help="Folder holding config/arsync.toml and connectors/ (default: the current "
                "folder).",
                file_okay=False,
            ),
        ] = Path(),
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        min_free_mb: Annotated[
            int,
            typer.Option(min=0, help="Warn when less disk than this is free where the store is."),
        ] = 1024,
        min_free_percent: Annotated[
            float,
            typer.Option(
                min=0, max=100, help="Warn when less than this share of that disk is free."
            ),
        ] = 10.0,
        max_skew: Annotated[
            float,
            typer.Option(min=0, help="Seconds this machine's clock may differ from a platform's."),
        ] = 60.0,
        systemd_unit: Annotated[
            Path | None,
            typer.Option(
                "--systemd-unit",
                dir_okay=False,
                help=f"The unit file to verify (default: {SYSTEMD_UNIT}, or where `systemctl "
                "cat arsync.service` finds it).",
            ),
        ] = None,
    ) -> None:
        """Check this installation and say exactly what to fix.

        Checks the configuration and policies, the token key's and the store's permissions,
        the store (opens, schema current, SQLite's integrity check), free disk space, each
        connector (client secret, templates, link, one authenticated call, how long the link
        holds, this machine's clock against the platform's), the mail server for letters and
        the systemd unit. It never migrates the store, sends mail or writes to the ledger; its
        one call per connector may refresh a stale access token, as any command's call would.
        Exit code 0 when there is no problem (warnings allowed), 1 when there is one.
        """
        from arsync.logs import configure

        # the doctor says everything in its report; the log only for what goes wrong inside
        configure(level="warning", fmt="json" if as_json else "auto")
        report = diagnose(
            home,
            thresholds=Thresholds(
                min_free_bytes=min_free_mb * 1024**2,
                min_free_percent=min_free_percent,
                max_skew=max_skew,
            ),
            unit=systemd_unit,
        )
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2))
        else:
            render(report)
        raise typer.Exit(report.exit_code)


__all__ = [
    "Finding",
    "Horizon",
    "Report",
    "Status",
    "Thresholds",
    "diagnose",
    "horizon",
    "register",
    "render",
    "skew_seconds",
]
