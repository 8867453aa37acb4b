"""What `arsync connect`, `sync` and `status` do, apart from parsing their arguments.

Each command validates the whole configuration first (every problem reported together, nothing
started), then opens the store (migrating it) and works connector by connector: one connector's
broken secret, dead grant or outage is reported and never stops the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from arsync.clock import Clock
from arsync.config import Config, ConnectorConfig
from arsync.domain import Page
from arsync.errors import ArsyncError, ConfigError, NotConnected
from arsync.runtime import Runtime, clock_for, oauth_app
from arsync.sync import FAILED, OK, PARKED, SKIPPED, Progress, SyncReport, sync_all

if TYPE_CHECKING:
    from arsync.connect import TenantChoice


# -- connect ------------------------------------------------------------------------------------
def connect(
    config: Config,
    name: str,
    *,
    headless: bool,
    open_browser: bool,
    port: int,
    tenant: str | None,
    echo: Callable[[str], None],
    read_line: Callable[[str], str],
    choose: Callable[[list[TenantChoice]], TenantChoice],
    clock: Clock | None = None,
) -> str:
    """Run the consent flow for connector `name` and store its tokens; returns a summary.

    Everything that can be checked is checked before the consent, and nothing is written
    before it succeeds: the client secret, the store (readable, not damaged, not from a newer
    arsync; or a place where it can be made) and the token key (readable, or makeable).
    """
    from arsync.connect import connect as consent
    from arsync.connect import store_connection
    from arsync.connectors.oauth import TokenVault, check_key, load_key
    from arsync.store import open_store, probe

    connector = config.connector(name)
    clock = clock or clock_for(config)
    settings = config.settings
    app = oauth_app(connector, clock)  # the secret is checked before the browser opens
    try:
        probe(settings.store_url())
        check_key(settings.key_location(), credential=settings.secrets.credential)

        def pick(choices: list[TenantChoice]) -> TenantChoice:
            if tenant is not None:
                for choice in choices:
                    if tenant in (choice.tenant_id, choice.name):
                        return choice
                offered = ", ".join(f"{c.name} ({c.tenant_id})" for c in choices)
                raise ConfigError(f"--tenant {tenant!r} is not among the companies: {offered}")
            return choose(choices)

        connection = consent(
            app,
            open_browser=open_browser,
            headless=headless,
            choose_tenant=pick,
            port=port,
            echo=echo,
            read_line=read_line,
        )
        fernet = load_key(
            settings.key_location(), credential=settings.secrets.credential, create=True
        )
        store = open_store(settings.store_url(), clock)
        try:
            store_connection(
                store, TokenVault(store, fernet), name, connector.platform_code, connection
            )
        finally:
            store.close()
        company = connection.company.name
        return f"{name} is connected to {company} ({app.label}); run `arsync sync {name}`"
    finally:
        app.close()


# -- sync ---------------------------------------------------------------------------------------
def sync(
    config: Config,
    names: Sequence[str],
    *,
    full: bool,
    sweep: bool,
    progress: Progress | None,
    clock: Clock | None = None,
) -> list[SyncReport]:
    chosen = _chosen(config, names)
    if not _store_made(config):
        # Nothing was ever connected here: no store to make, as `status` makes none either.
        return [_not_connected(c.name) for c in chosen]
    runtime = Runtime.open(config, clock)
    try:
        reports: dict[str, SyncReport] = {}
        coordinators = []
        for connector in chosen:
            try:
                coordinators.append(runtime.coordinator(connector.name))
            except NotConnected:
                reports[connector.name] = _not_connected(connector.name)
            except ArsyncError as err:
                reports[connector.name] = SyncReport(connector.name, FAILED, str(err), error=err)
        for report in sync_all(
            runtime.store,
            coordinators,
            workers=config.settings.sync.workers,
            full=full,
            force_sweep=sweep,
            progress=progress,
        ):
            reports[report.name] = report
            if report.outcome == OK:
                _record_holds(runtime, config.connector(report.name))
        return [reports[c.name] for c in chosen]
    finally:
        runtime.close()


def _record_holds(runtime: Runtime, connector: ConnectorConfig) -> None:
    """After a good sync: the holds the bookkeeper set in the ledger, and what the calendar
    settled (a promise broken or kept, a pause over), into the paper trail."""
    from arsync.collecting import firm_of
    from arsync.escalation.reading import ZoneUnknown
    from arsync.escalation.record import reconcile_ledger, settle

    policy = runtime.config.policy_of(connector)
    with runtime.store.transaction() as tx:
        row = tx.connectors.by_name(connector.name)
        if row is None:
            return
        try:
            firm = firm_of(connector, row)
        except ZoneUnknown:
            # `arsync plan` says what to set; the ledger's holds are recorded all the same
            reconcile_ledger(tx, row, policy)
            return
        settle(tx, row, policy, firm, tx.now)


def _not_connected(name: str) -> SyncReport:
    err = NotConnected(f"not connected yet: run `arsync connect {name}`")
    return SyncReport(name, SKIPPED, str(err), error=err)


def _store_made(config: Config) -> bool:
    """Whether the store exists (a SQLite file is there; a PostgreSQL store always may)."""
    from arsync.store.engine import parse_url, sqlite_path

    path = sqlite_path(parse_url(config.settings.store_url()))
    return path is None or path.exists()


def _chosen(config: Config, names: Sequence[str]) -> list[ConnectorConfig]:
    if names:
        return [config.connector(n) for n in dict.fromkeys(names)]
    enabled = [c for _, c in sorted(config.connectors.items()) if c.enabled]
    if not enabled:
        raise ConfigError(
            f"no connectors to sync: add one to {config.home / 'connectors'} "
            "(copy a *.toml.example there) and run `arsync connect NAME`"
        )
    return enabled


class TerminalProgress(Progress):
    """A rich progress bar per connector on a terminal: records pulled, per stream."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        self.bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        )
        self.tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> TerminalProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def page(self, name: str, page: Page, records: int) -> None:
        key = (name, page.stream)
        task = self.tasks.get(key)
        if task is None:
            task = self.bars.add_task(f"{name}: {page.stream}", total=page.total)
            self.tasks[key] = task
        self.bars.update(task, advance=records, total=page.total)
        if page.completed:
            # a platform that gave no total (QBO) has now said where the stream ends
            done = self.bars.tasks[task].completed
            self.bars.update(task, total=done, completed=done)


def render_reports(reports: list[SyncReport]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    style = {OK: "green", PARKED: "yellow", SKIPPED: "yellow", FAILED: "red"}
    width = max((len(r.name) for r in reports), default=0)
    for r in reports:
        console.print(
            f"{escape(r.name):<{width}}  [{style.get(r.outcome, 'red')}]{r.outcome:<7}[/]  "
            f"{escape(r.message)}"
        )


def exit_code(reports: list[SyncReport]) -> int:
    for r in reports:
        if r.exit_code:
            return r.exit_code
    return 0


# -- status -------------------------------------------------------------------------------------
def status(
    config: Config, names: Sequence[str], *, as_json: bool, clock: Clock | None = None
) -> None:
    from arsync.status import ConnectorStatus, document, gather, render

    for n in names:
        config.connector(n)
    configured = {n: c.platform_code for n, c in config.connectors.items()}
    clock = clock or clock_for(config)
    if not _store_made(config):
        # Nothing was ever connected here: say so without creating a store as a side effect
        # (`status` in the wrong folder must not leave a database behind).
        statuses = [
            ConnectorStatus(n, p, configured=True, detail=f"run `arsync connect {n}`")
            for n, p in sorted(configured.items())
            if not names or n in names
        ]
    else:
        runtime = Runtime.open(config, clock)
        try:
            statuses = gather(runtime.store, config, only=names)
        finally:
            runtime.close()
    now = clock.now()
    if as_json:
        json.dump(document(statuses, now), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(statuses, now)
