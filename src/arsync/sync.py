"""Sync: pull a connector's changes, reconcile them into the store, cursor with the data.

`sync_connector` runs one connector under a lock that no other process can hold at the same
time, records a sync run, and applies each page the connector yields in its own transaction
together with the cursor that follows it. Whatever stops it (a kill, a fault, a parked rate
limit, a bug), the store holds whole pages and the cursor of the last of them, so the next run
resumes there.

A run is "running" until its last page commits, and only then "ok"; anything else that ends it
is recorded as such (DESIGN rule 9): a platform's refusal or an outage as "failed" or "parked",
an unexpected exception as "failed" with its traceback logged once. Nothing escapes the
connector's boundary: one connector's failure is reported and never stops the others
(`sync_all`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import structlog

from arsync.domain import Page
from arsync.errors import ArsyncError, Busy, Parked, ReconnectNeeded, Unexpected
from arsync.runtime import Coordinator
from arsync.store import ConnectorState, RunOutcome, Store
from arsync.words import span

log = structlog.get_logger("arsync.sync")


class Outcome(StrEnum):
    """How one connector's sync ended, as `arsync sync` reports it."""

    OK = "ok"
    FAILED = "failed"
    PARKED = "parked"  # the platform's limits asked for a long wait
    SKIPPED = "skipped"  # not run: not connected, reconnect needed, or another sync running


OK, FAILED, PARKED, SKIPPED = Outcome.OK, Outcome.FAILED, Outcome.PARKED, Outcome.SKIPPED


@dataclass
class SyncReport:
    name: str
    outcome: Outcome
    message: str = ""
    pages: int = 0
    created: int = 0
    changed: int = 0
    deleted: int = 0
    quarantined: int = 0
    api_calls: int = 0
    seconds: float = 0.0
    #: why it is not ok (always set unless ok)
    error: ArsyncError | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        if self.outcome is OK:
            return 0
        return self.error.exit_code if self.error is not None else 1


class Progress:
    """What a terminal progress bar (or nothing) is told as pages land."""

    def started(self, name: str) -> None: ...

    def page(self, name: str, page: Page, records: int) -> None: ...

    def finished(self, report: SyncReport) -> None: ...


def _not_run(name: str, outcome: Outcome, error: ArsyncError) -> SyncReport:
    return SyncReport(name, outcome, str(error), error=error)


def sync_connector(
    store: Store,
    coordinator: Coordinator,
    *,
    full: bool = False,
    force_sweep: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Sync one connector once; every way it can end comes back as a report, never raised."""
    progress = progress or Progress()
    name = coordinator.name
    try:
        with store.reading() as tx:
            row = tx.connectors.get(coordinator.connector_id)
        if row.status is ConnectorState.RECONNECT_NEEDED:
            return _not_run(
                name,
                SKIPPED,
                ReconnectNeeded(
                    f"reconnect needed ({row.status_reason}): run `arsync connect {name}`"
                ),
            )
        if not row.linked:
            return _not_run(
                name,
                SKIPPED,
                ReconnectNeeded(f"not connected yet: run `arsync connect {name}`"),
            )
        now = store.clock.now()
        if row.parked_until is not None and row.parked_at(now):
            wait = (row.parked_until - now).total_seconds()
            return _not_run(
                name,
                PARKED,
                Parked(
                    f"parked until {row.parked_until:%Y-%m-%d %H:%M} UTC, {span(wait)} from now: "
                    f"{row.parked_reason}",
                    retry_after=wait,
                ),
            )
        with store.exclusive(f"sync:{name}"):
            return _locked(store, coordinator, full, force_sweep, progress)
    except Busy as err:
        return _not_run(name, SKIPPED, Busy(f"another sync of this connector is running ({err})"))
    except ArsyncError as err:  # e.g. the store could not be read
        log.warning("sync not run", connector=name, error=str(err))
        return _not_run(name, FAILED, err)
    except Exception as err:
        log.exception("sync failed unexpectedly", connector=name)
        return _not_run(name, FAILED, Unexpected.wrap(err))


def _locked(
    store: Store,
    coordinator: Coordinator,
    full: bool,
    force_sweep: bool,
    progress: Progress,
) -> SyncReport:
    clock = store.clock
    started = clock.monotonic()
    calls_before = coordinator.api_calls
    connector_id = coordinator.connector_id
    report = SyncReport(coordinator.name, FAILED)
    with store.transaction() as tx:
        sync_id = tx.runs.begin(connector_id, full=full)
    bound = log.bind(connector=coordinator.name, platform=coordinator.link.platform, sync=sync_id)
    progress.started(coordinator.name)
    outcome = RunOutcome.FAILED
    error: ArsyncError | None = None
    try:
        coordinator.before_work()
        with store.reading() as tx:
            state = tx.records.cursor(connector_id)

        def local_open() -> set[str]:
            with store.reading() as tx:
                return tx.records.open_invoice_ids(connector_id)

        for page in coordinator.connector.pull(
            state,
            full=full,
            force_sweep=force_sweep,
            local_open=local_open,
            now=clock.now(),
        ):
            with store.transaction() as tx:
                out = tx.records.apply_page(connector_id, sync_id, page)
                if page.company is not None:
                    tx.connectors.set_company(connector_id, page.company)
                tx.runs.page_applied(sync_id, out)
            report.pages += 1
            report.created += out.created
            report.changed += out.changed
            report.deleted += out.deleted
            report.quarantined += out.quarantined
            if out.quarantined:
                bound.warning("records quarantined", stream=page.stream, count=out.quarantined)
            progress.page(coordinator.name, page, len(page.items))
        outcome = RunOutcome.OK
    except Parked as err:
        wait = err.retry_after or 3600.0
        until = clock.now() + timedelta(seconds=wait)
        with store.transaction() as tx:
            tx.connectors.park(connector_id, until, str(err))
        parked = Parked(
            f"parked until {until:%Y-%m-%d %H:%M} UTC: {err}", retry_after=wait, problem=err.problem
        )
        parked.__cause__ = err
        outcome, error = RunOutcome.PARKED, parked
    except ArsyncError as err:  # reconnect needed, transient, refused, unreadable
        error = err
    except Exception as err:
        bound.exception("sync failed unexpectedly")
        error = Unexpected.wrap(err)
    except BaseException as err:  # interrupted (Ctrl-C): recorded as failed, then passed on
        error = Unexpected(f"interrupted ({type(err).__name__})")
        _finish(store, sync_id, outcome, error, coordinator.api_calls - calls_before)
        raise
    report.api_calls = coordinator.api_calls - calls_before
    report.seconds = clock.monotonic() - started
    try:
        _finish(store, sync_id, outcome, error, report.api_calls)
    except ArsyncError as err:  # the run could not be recorded (e.g. the store is damaged)
        if error is None:
            outcome, error = RunOutcome.FAILED, err
        bound.warning("sync run not recorded", error=str(err))
    report.error = error
    if outcome is RunOutcome.OK:
        report.outcome = OK
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
        assert error is not None
        report.outcome = PARKED if outcome is RunOutcome.PARKED else FAILED
        report.message = str(error)
        bound.warning("sync did not finish", outcome=report.outcome.value, error=report.message)
    progress.finished(report)
    return report


def _finish(
    store: Store, sync_id: int, outcome: RunOutcome, error: ArsyncError | None, calls: int
) -> None:
    with store.transaction() as tx:
        tx.runs.finish(
            sync_id,
            outcome,
            api_calls=calls,
            error=str(error) if error is not None else None,
        )


def _summary(r: SyncReport) -> str:
    parts = [f"{r.created} new", f"{r.changed} changed", f"{r.deleted} deleted"]
    if r.quarantined:
        parts.append(f"{r.quarantined} quarantined")
    calls = f"{r.api_calls} API call{'s' if r.api_calls != 1 else ''}"
    return f"{', '.join(parts)} ({calls})"


def sync_all(
    store: Store,
    coordinators: Sequence[Coordinator],
    *,
    workers: int = 4,
    full: bool = False,
    force_sweep: bool = False,
    progress: Progress | None = None,
) -> list[SyncReport]:
    """Every connector, `workers` at a time; each connector's failure stays its own."""

    def one(coordinator: Coordinator) -> SyncReport:
        try:
            return sync_connector(
                store, coordinator, full=full, force_sweep=force_sweep, progress=progress
            )
        except Exception as err:  # sync_connector reports everything; this is the last guard
            log.exception("sync failed unexpectedly", connector=coordinator.name)
            return _not_run(coordinator.name, FAILED, Unexpected.wrap(err))

    if len(coordinators) <= 1 or workers <= 1:
        return [one(c) for c in coordinators]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
        return list(pool.map(one, coordinators))
