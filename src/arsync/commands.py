"""What `arsync connect`, `sync` and `status` do, apart from parsing their arguments.

Each command validates the whole configuration first (every problem reported together, nothing
started), then opens the store (migrating it) and works connector by connector: one connector's
broken secret, dead grant or outage is reported and never stops the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.fernet import MultiFernet

from arsync.config import Config, ConnectorConfig
from arsync.connectors.base import Link, Page
from arsync.errors import ArsyncError, ConfigError
from arsync.store import Store, open_store
from arsync.sync import FAILED, OK, PARKED, SKIPPED, Job, Progress, SyncReport, sync_all

if TYPE_CHECKING:
    from arsync.connectors.oauth import OAuthApp


@dataclass
class Runtime:
    config: Config
    store: Store

    def close(self) -> None:
        self.store.engine.dispose()


def key_ring(config: Config, *, create: bool) -> MultiFernet:
    from arsync.connectors.oauth import load_key

    secrets = config.settings.secrets
    return load_key(config.settings.key_location(), credential=secrets.credential, create=create)


def oauth_app(connector: ConnectorConfig) -> OAuthApp:
    from arsync.connectors.oauth import OAuthApp

    return OAuthApp(
        connector.platform_code,
        connector.oauth.client_id,
        connector.client_secret(),
        connector.endpoints(),
        connector.oauth.scopes,
        str(connector.oauth.redirect_uri) if connector.oauth.redirect_uri else None,
    )


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
    choose: Callable[[list[Any]], Any],
) -> str:
    """Run the consent flow for connector `name` and store its tokens; returns a summary."""
    from arsync.connect import connect as consent
    from arsync.connect import store_connection
    from arsync.connectors.oauth import TokenVault

    connector = config.connector(name)
    app = oauth_app(connector)  # the secret is checked before the browser opens
    fernet = key_ring(config, create=True)
    runtime = Runtime(config, open_store(config.settings.store_url()))
    try:

        def pick(choices: list[Any]) -> Any:
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
        vault = TokenVault(runtime.store.engine, fernet)
        store_connection(runtime.store.engine, vault, name, connector.platform_code, connection)
        company = connection.company_name or connection.tenant_id
        return f"{name} is connected to {company} ({app.label}); run `arsync sync {name}`"
    finally:
        app.close()
        runtime.close()


# -- sync ---------------------------------------------------------------------------------------
def sync(
    config: Config,
    names: Sequence[str],
    *,
    full: bool,
    sweep: bool,
    progress: Progress | None,
) -> list[SyncReport]:
    chosen = _chosen(config, names)
    runtime = Runtime(config, open_store(config.settings.store_url()))
    apps: list[OAuthApp] = []
    try:
        jobs: list[Job] = []
        reports: dict[str, SyncReport] = {}
        fernet: MultiFernet | None = None
        for connector in chosen:
            try:
                connector_id = runtime.store.ensure_connector(
                    connector.name, connector.platform_code
                )
                row = runtime.store.connector_by_id(connector_id)
                job = None
                if row.tenant_id:
                    if fernet is None:
                        fernet = key_ring(config, create=False)
                    job = _job(runtime, connector, connector_id, row.tenant_id, fernet, apps)
            except ArsyncError as err:
                reports[connector.name] = SyncReport(connector.name, FAILED, str(err), error=err)
                continue
            if job is None:
                reports[connector.name] = SyncReport(
                    connector.name,
                    SKIPPED,
                    f"not connected yet: run `arsync connect {connector.name}`",
                )
                continue
            jobs.append(job)
        for report in sync_all(
            runtime.store,
            jobs,
            workers=config.settings.sync.workers,
            full=full,
            force_sweep=sweep,
            progress=progress,
        ):
            reports[report.name] = report
        return [reports[c.name] for c in chosen]
    finally:
        for app in apps:
            app.close()
        runtime.close()


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


def _job(
    runtime: Runtime,
    connector: ConnectorConfig,
    connector_id: int,
    tenant_id: str,
    fernet: MultiFernet,
    apps: list[OAuthApp],
) -> Job:
    from arsync.connectors.oauth import TokenManager, TokenVault

    store = runtime.store
    app = oauth_app(connector)
    apps.append(app)
    manager = TokenManager(TokenVault(store.engine, fernet), app, connector_id)
    link = Link(
        name=connector.name,
        platform=connector.platform_code,
        tenant_id=tenant_id,
        api_base=connector.endpoints().api_base,
        limits=connector.limits(),
        sweep_every=connector.sweep_interval,
    )
    return Job(connector.name, link, manager, before=manager.keep_alive)


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
def status(config: Config, names: Sequence[str], *, as_json: bool) -> None:
    from arsync.status import ConnectorStatus, gather, render
    from arsync.store.engine import parse_url, sqlite_path

    for n in names:
        config.connector(n)
    configured = {n: c.platform_code for n, c in config.connectors.items()}
    url = config.settings.store_url()
    path = sqlite_path(parse_url(url))
    if path is not None and not path.exists():
        # Nothing was ever connected here: say so without creating a store as a side effect
        # (`status` in the wrong folder must not leave a database behind).
        statuses = [
            ConnectorStatus(n, p, configured=True, detail=f"run `arsync connect {n}`")
            for n, p in sorted(configured.items())
            if not names or n in names
        ]
    else:
        runtime = Runtime(config, open_store(url))
        try:
            statuses = gather(runtime.store, configured, only=names)
        finally:
            runtime.close()
    now = datetime.now(UTC)
    if as_json:
        json.dump(
            {"generated_at": now.isoformat(), "connectors": [s.to_json(now) for s in statuses]},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        render(statuses, now)
