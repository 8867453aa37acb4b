"""Sync: pull a connector's changes, reconcile them into the store, cursor with the data.

`sync_connector` runs one connector under a lock that no other process can hold at the same
time, records a sync run, and applies each page the connector yields in its own transaction
together with the cursor that follows it. Whatever stops it (a kill, a fault, a parked rate
limit), the store holds whole pages and the cursor of the last of them, so the next run resumes
there. One connector's failure is reported and never stops the others (`sync_all`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from arsync.connectors.base import Connector, Link, Page, TokenSource, factory_for
from arsync.errors import ArsyncError, Parked
from arsync.store import Busy, Store

log = structlog.get_logger("arsync.sync")

#: outcome of one connector's sync
OK, FAILED, PARKED, SKIPPED = "ok", "failed", "parked", "skipped"


@dataclass
class SyncReport:
    name: str
    outcome: str
    message: str = ""
    pages: int = 0
    created: int = 0
    changed: int = 0
    deleted: int = 0
    quarantined: int = 0
    api_calls: int = 0
    seconds: float = 0.0
    error: ArsyncError | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        if self.outcome in (OK, SKIPPED) or self.error is None:
            return 0
        return self.error.exit_code


class Progress:
    """What a terminal progress bar (or nothing) is told as pages land."""

    def started(self, name: str) -> None: ...

    def page(self, name: str, page: Page, records: int) -> None: ...

    def finished(self, report: SyncReport) -> None: ...


@dataclass
class Job:
    """Everything needed to sync one connector."""

    name: str
    link: Link
    tokens: TokenSource
    #: called before pulling: e.g. the token manager's keep-alive refresh
    before: Callable[[], object] | None = None


def sync_connector(
    store: Store,
    job: Job,
    *,
    full: bool = False,
    force_sweep: bool = False,
    progress: Progress | None = None,
    connector: Connector | None = None,
) -> SyncReport:
    progress = progress or Progress()
    started = time.monotonic()
    name = job.name
    row = store.connector(name)
    if row is None or row.status == "new" or not row.tenant_id:
        return SyncReport(name, SKIPPED, f"not connected yet: run `arsync connect {name}`")
    if row.status == "reconnect_needed":
        return SyncReport(
            name,
            SKIPPED,
            f"reconnect needed ({row.status_reason}): run `arsync connect {name}`",
        )
    now = datetime.now(UTC)
    if row.parked_until is not None and row.parked_until > now:
        return SyncReport(
            name,
            PARKED,
            f"parked until {row.parked_until:%Y-%m-%d %H:%M} UTC ({row.parked_reason})",
        )
    try:
        with store.exclusive(f"sync:{name}"):
            return _locked(store, job, row.id, full, force_sweep, progress, connector, started)
    except Busy:
        return SyncReport(name, SKIPPED, "another sync of this connector is running")


def _locked(
    store: Store,
    job: Job,
    connector_id: int,
    full: bool,
    force_sweep: bool,
    progress: Progress,
    connector: Connector | None,
    started: float,
) -> SyncReport:
    report = SyncReport(job.name, OK)
    sync_id = store.begin_sync(connector_id, full=full)
    conn = connector or factory_for(job.link.platform)(job.link, job.tokens)
    bound = log.bind(connector=job.name, platform=job.link.platform, sync=sync_id)
    progress.started(job.name)
    try:
        if job.before is not None:
            job.before()
        row = store.connector_by_id(connector_id)
        if not row.company_name:
            info = conn.company()
            store.set_company(connector_id, info.name, info.base_currency)
        state = store.cursor(connector_id)
        for page in conn.pull(
            state,
            full=full,
            force_sweep=force_sweep,
            local_open=lambda: store.open_invoice_ids(connector_id),
            now=datetime.now(UTC),
        ):
            out = store.apply_page(connector_id, sync_id, page)
            report.pages += 1
            report.created += out.created
            report.changed += out.changed
            report.deleted += out.deleted
            report.quarantined += out.quarantined
            if out.quarantined:
                bound.warning("records quarantined", stream=page.stream, count=out.quarantined)
            progress.page(job.name, page, len(page.items))
    except Parked as err:
        wait = err.retry_after or 3600.0
        until = datetime.now(UTC) + timedelta(seconds=wait)
        store.park(connector_id, until, str(err))
        report.outcome, report.error = PARKED, err
        report.message = f"parked until {until:%Y-%m-%d %H:%M} UTC: {err}"
    except ArsyncError as err:  # reconnect needed, transient, refused, unreadable
        report.outcome, report.error, report.message = FAILED, err, str(err)
    finally:
        report.api_calls = conn.api_calls
        report.seconds = time.monotonic() - started
        outcome = report.outcome
        store.finish_sync(
            sync_id,
            outcome=outcome,
            api_calls=report.api_calls,
            error=report.message if outcome != OK else None,
        )
        if connector is None:
            conn.close()
    if report.outcome == OK:
        report.message = _summary(report)
        bound.info(
            "sync finished",
            pages=report.pages,
            created=report.created,
            changed=report.changed,
            deleted=report.deleted,
            quarantined=report.quarantined,
            api_calls=report.api_calls,
        )
    else:
        bound.warning("sync did not finish", outcome=report.outcome, error=report.message)
    progress.finished(report)
    return report


def _summary(r: SyncReport) -> str:
    parts = [f"{r.created} new", f"{r.changed} changed", f"{r.deleted} deleted"]
    if r.quarantined:
        parts.append(f"{r.quarantined} quarantined")
    calls = f"{r.api_calls} API call{'s' if r.api_calls != 1 else ''}"
    return f"{', '.join(parts)} ({calls})"


def sync_all(
    store: Store,
    jobs: Sequence[Job],
    *,
    workers: int = 4,
    full: bool = False,
    force_sweep: bool = False,
    progress: Progress | None = None,
) -> list[SyncReport]:
    """Every job, `workers` at a time; each connector's failure stays its own."""

    def one(job: Job) -> SyncReport:
        try:
            return sync_connector(store, job, full=full, force_sweep=force_sweep, progress=progress)
        except ArsyncError as err:  # e.g. the store refused: report it, keep the others going
            return SyncReport(job.name, FAILED, str(err), error=err)

    if len(jobs) <= 1 or workers <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
        return list(pool.map(one, jobs))
