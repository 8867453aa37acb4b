"""One unit of work per connector: sync, plan, enqueue, dispatch (`arsync run --once`).

This is what the daemon schedules. Each connector's unit is kept apart from the others': one
connector's dead grant, outage or bad data is reported and the next one goes on. `dry_run`
reads everything (the sync too is skipped) and shows what would be sent, writing nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from arsync.clock import Clock
from arsync.config import Config, ConnectorConfig
from arsync.connectors.base import Writer
from arsync.errors import ArsyncError, ConfigError, Unexpected
from arsync.escalation.planner import Plan, Status, plan
from arsync.escalation.policy import Policy
from arsync.escalation.reading import snapshot
from arsync.escalation.record import settle
from arsync.runtime import Runtime
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import MARKER_LENGTH, Dispatched, Dispatcher
from arsync.writeback.outbox import Enqueued, enqueue
from arsync.writeback.words import QBO_NOTE_LIMIT, XERO_NOTE_LIMIT, Words, check, search_path

log = structlog.get_logger("arsync.run")
S = OutboxState


@dataclass
class UnitReport:
    """What one connector's unit of work did."""

    name: str
    synced: str = ""
    enqueued: Enqueued | None = None
    dispatched: Dispatched | None = None
    #: dry run: what would be sent now, and what is due but must wait
    would: list[str] = field(default_factory=list)
    later: str = ""
    error: ArsyncError | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0


def run_once(
    config: Config,
    names: Sequence[str],
    *,
    dry_run: bool = False,
    clock: Clock | None = None,
    sync: bool = True,
) -> list[UnitReport]:
    """Sync, plan, enqueue and dispatch each chosen connector once."""
    from arsync.commands import _chosen
    from arsync.commands import sync as sync_cmd

    chosen = _chosen(config, names)
    reports = {c.name: UnitReport(c.name) for c in chosen}
    if sync and not dry_run:
        for synced in sync_cmd(
            config, [c.name for c in chosen], full=False, sweep=False, progress=None, clock=clock
        ):
            reports[synced.name].synced = f"{synced.outcome}: {synced.message}"
    runtime = Runtime.open(config, clock)
    try:
        for connector in chosen:
            report = reports[connector.name]
            try:
                unit(runtime, connector, report, dry_run=dry_run)
            except ArsyncError as err:
                report.error = err
                log.warning("unit failed", connector=connector.name, error=str(err))
            except Exception as err:  # one connector's bug never stops the others
                log.exception("unit failed unexpectedly", connector=connector.name)
                report.error = Unexpected.wrap(err)
    finally:
        runtime.close()
    return [reports[c.name] for c in chosen]


def unit(
    runtime: Runtime,
    connector: ConnectorConfig,
    report: UnitReport,
    *,
    dry_run: bool,
    owner: str | None = None,
    stop: Callable[[], bool] | None = None,
    words: tuple[Words, int | None] | None = None,
) -> None:
    """Settle, plan, enqueue and dispatch one connector (its sync already done). `owner`
    holds the claims (default: a name of its own); `stop` is asked before each claim;
    `words`: the connector's checked templates, when the caller keeps them loaded."""
    from arsync.collecting import _row, firm_of

    policy = runtime.config.policy_of(connector)
    store = runtime.store
    with store.reading() as tx:
        row = _row(tx, connector)
    firm = firm_of(connector, row)
    if dry_run:
        with store.reading() as tx:
            now = tx.now
            snap = snapshot(tx, row, policy, firm, now)
            ready = tx.outbox.of(row.id, states=(S.READY, S.RETRYING, S.PLANNED))
        result = plan(snap, policy, now)
        names = {p.id: p.name for p in snap.customers.values()}
        numbers = {i.id: i.number or i.id for i in snap.invoices}
        report.would = would_send(result, ready, names, numbers)
        waiting = [d for d in result.decisions if d.status is Status.WAITING and d.at]
        if waiting:
            first = min(d.at for d in waiting if d.at is not None)
            report.later = (
                f"{len(waiting)} more due but not allowed yet (quiet hours, a closed day, "
                f"spacing); the first at {first.astimezone(firm.zone):%a %-d %b %H:%M} "
                f"{firm.zone.key}"
            )
        return
    with store.transaction() as tx:
        settle(tx, row, policy, firm, tx.now)
    with store.reading() as tx:
        now = tx.now
        row = _row(tx, connector)
        snap = snapshot(tx, row, policy, firm, now)
    result = plan(snap, policy, now)
    with store.transaction() as tx:
        report.enqueued = enqueue(tx, row, result, policy)
    coordinator = runtime.coordinator(connector.name)
    writer = coordinator.connector
    if not isinstance(writer, Writer):
        raise ConfigError(f"{connector.name}: its platform cannot write back")
    coordinator.before_work()
    window = coordinator.session.retry.idempotency_window.get(row.platform, timedelta(0))
    words_, limit = words or words_for(runtime.config, connector, policy, row.platform)
    report.dispatched = Dispatcher(
        store=store,
        row=row,
        writer=writer,
        policy=policy,
        firm=firm,
        idempotency_window=window,
        words=words_,
        note_limit=limit,
        mail=runtime.config.settings.mail,
        home=runtime.config.settings.home,
        limit=None,
        owner=owner,
        stop=stop,
    ).run()


#: the longest note each platform keeps (Xero's History: 250, counted in UTF-16 code units)
NOTE_LIMITS = {"xero": XERO_NOTE_LIMIT, "qbo": QBO_NOTE_LIMIT}


def words_for(
    config: Config, connector: ConnectorConfig, policy: Policy, platform: str
) -> tuple[Words, int | None]:
    """The connector's templates, checked: a template that could break the platform's limit
    on a note, or names an unknown field, is refused with `file: template: message`."""
    words = Words.load(
        search_path(config.home, connector=connector.name, policy=policy), home=config.home
    )
    limit = NOTE_LIMITS.get(platform)
    problems = check(
        words,
        note_limit_utf16=limit,
        stage_titles=[s.label for s in policy.stages],
        marker_length=MARKER_LENGTH,
    )
    if problems:
        raise ConfigError(
            f"the templates for {connector.name} would not work:\n  " + "\n  ".join(problems)
        )
    return words, limit


def would_send(
    result: Plan,
    queued: Sequence[OutboxRow],
    names: Mapping[str, str],
    numbers: Mapping[str, str],
) -> list[str]:
    """Dry run: the actions a run now would take, in words a person reads."""

    def label(invoice_id: str | None, customer_id: str) -> str:
        number = numbers.get(invoice_id or "", invoice_id or "")
        return f"{number} · {names.get(customer_id, customer_id)}"

    lines: list[str] = []
    seen: set[str] = set()
    for row in queued:
        seen.add(row.id)
        lines.append(
            f"{row.kind:<8} {label(row.invoice_id, row.customer_id):<40} {row.stage_title} "
            f"(queued, {row.state.value.replace('_', ' ')})"
        )
    for action in result.actions():
        if action.id in seen:
            continue
        waits = " (waits for approval)" if action.approval else ""
        lines.append(
            f"{action.kind.value:<8} {label(action.invoice_id, action.customer_id):<40} "
            f"{action.stage_title}, {action.amount}{waits}"
        )
    return lines


def render_units(reports: Sequence[UnitReport], *, dry_run: bool) -> str:
    """What each connector's unit did, in a few lines."""
    out: list[str] = []
    for r in reports:
        if r.error is not None:
            out.append(f"{r.name}: failed: {r.error}")
            continue
        if dry_run:
            said = f"would do {len(r.would)} thing(s) now" if r.would else "nothing to do now"
            out.append(f"{r.name}: {said}" + (":" if r.would else ""))
            out.extend(f"  {line}" for line in r.would)
            if r.later:
                out.append(f"  {r.later}")
            continue
        head = [f"{r.name}:"]
        if r.synced:
            head.append(f"sync {r.synced};")
        if r.enqueued is not None:
            e = r.enqueued
            head.append(f"{e.added} new action(s)")
            if e.awaiting_approval:
                head.append(f"({e.awaiting_approval} awaiting approval)")
            if e.superseded:
                head.append(f"{e.superseded} superseded;")
        d = r.dispatched
        if d is not None:
            counts = {
                s: d.count(s)
                for s in (S.DONE, S.SKIPPED, S.RETRYING, S.UNKNOWN, S.NEEDS_PERSON, S.DEAD)
            }
            said = ", ".join(f"{n} {s.value.replace('_', ' ')}" for s, n in counts.items() if n)
            head.append(f"dispatched: {said or 'nothing due'}")
            if d.released:
                head.append(f"({d.released} wait for later)")
            if d.stopped:
                head.append(f"; stopped: {d.stopped}")
        out.append(" ".join(head))
        if d is not None:
            for o in d.outcomes:
                out.append(
                    f"  {o.action[:8]}  {o.state.value.replace('_', ' '):<12} {o.kind:<6} "
                    f"{o.label or o.subject}: {o.words}"
                )
    return "\n".join(out)
