"""`arsync status`: per connector, health, last sync, counts and receivables aging.

Read from the store alone: no API call, no key needed (token expiry times are kept in clear;
only the tokens themselves are encrypted). Secrets never appear here. The facts a running
arsync serves at /healthz and /metrics (health.py: API calls and the day's quota left, actions
today, the health rule) are read by the same `health.gather`, then the counts and the aging,
which a scrape does not need, are added here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rich.console import Console

from arsync.aging import BUCKETS, OpenItem, age
from arsync.config import Config
from arsync.domain import PLATFORM_NAMES
from arsync.health import (
    REFRESH_UNUSED_LIMIT,
    ConnectorFacts,
    Expected,
    judge,
)
from arsync.health import gather as gather_facts
from arsync.store import RecordCounts, Store
from arsync.words import span

__all__ = [
    "BUCKET_KEYS",
    "REFRESH_UNUSED_LIMIT",
    "ConnectorStatus",
    "document",
    "gather",
    "render",
]

BUCKET_KEYS = ("current", "1-30", "31-60", "61-90", "90+")


@dataclass
class ConnectorStatus:
    name: str
    platform: str
    configured: bool
    company: str | None = None
    tenant_id: str | None = None
    health: str = "not connected"  # ok | not connected | reconnect needed | parked | failing
    detail: str | None = None
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    last_sync_at: datetime | None = None
    last_sync_outcome: str | None = None
    last_ok_at: datetime | None = None
    #: whether a sync has ever finished: until one has, the store holds only part of the books
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    aging: list[dict[str, Any]] = field(default_factory=list)
    #: the outbox by state ("done", "needs_person"...), and channels parked for the day
    outbox: dict[str, int] = field(default_factory=dict)
    parked_channels: dict[str, str] = field(default_factory=dict)
    #: the facts health and metrics read (None: the store has never been made)
    facts: ConnectorFacts | None = None
    #: why this connector makes arsync unhealthy (health.judge); empty when it does not
    reasons: list[str] = field(default_factory=list)

    def to_json(self, now: datetime) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "name": self.name,
            "platform": self.platform,
            "configured": self.configured,
            "company": self.company,
            "tenant_id": self.tenant_id,
            "health": self.health,
            "detail": self.detail,
            "token": {
                "access_expires_at": iso(self.access_expires_at),
                "refresh_expires_at": iso(self.refresh_expires_at),
            },
            "last_sync": {"at": iso(self.last_sync_at), "outcome": self.last_sync_outcome},
            "last_successful_sync": {
                "at": iso(self.last_ok_at),
                "age_seconds": int((now - self.last_ok_at).total_seconds())
                if self.last_ok_at
                else None,
            },
            "complete": self.complete,
            "counts": self.counts,
            "aging": self.aging,
            "outbox": self.outbox,
            "parked_channels": self.parked_channels,
            "reasons": self.reasons,
            # the facts /healthz and /metrics serve, as they are there
            "facts": self.facts.to_json(now) if self.facts is not None else None,
        }


def _counts(counts: RecordCounts) -> dict[str, int]:
    return {
        "customers": counts.customers,
        "invoices": counts.invoices,
        "open invoices": counts.open_invoices,
        "payments": counts.payments,
        "credits": counts.credits,
        "quarantined": counts.quarantined,
    }


def gather(
    store: Store,
    configured: Config | Mapping[str, str],
    *,
    only: Sequence[str] = (),
    today: date | None = None,
) -> list[ConnectorStatus]:
    """Each connector's status. `configured` is the configuration, or (as before it was
    needed) a map of the connector names from connectors/*.toml to their platform codes: then
    what only the files say (intervals, limits, the firm's zone) is not known, so the health
    rule is not applied and the day's quota is not said."""
    now = store.clock.now()
    today = today or now.astimezone().date()
    if isinstance(configured, Config):
        platforms = {n: c.platform_code for n, c in configured.connectors.items()}
        expected: Config | dict[str, Expected] = configured
    else:
        platforms = dict(configured)
        expected = {n: Expected(platform=p) for n, p in configured.items()}
    facts = gather_facts(store, expected, now, only=only)
    out: list[ConnectorStatus] = []
    with store.reading() as tx:
        rows = {r.name: r for r in tx.connectors.all()}
        last_runs = tx.runs.last_finished()
        for cf in facts.connectors:
            row = rows.get(cf.name)
            st = ConnectorStatus(
                name=cf.name,
                platform=platforms.get(cf.name) or (row.platform if row else "?"),
                configured=cf.configured,
                health=cf.state,
                detail=cf.detail,
                facts=cf,
                reasons=judge([cf], now, None, None),
            )
            out.append(st)
            if row is None:
                continue
            st.company, st.tenant_id = cf.company, cf.tenant_id
            st.last_sync_at, st.last_ok_at = cf.last_sync_at, cf.last_ok_at
            st.complete = cf.last_ok_at is not None
            run = last_runs.get(row.id)
            st.last_sync_outcome = run.outcome.value if run else None
            st.access_expires_at = cf.access_expires_at
            st.refresh_expires_at = cf.refresh_expires_at
            st.counts = _counts(tx.records.counts(row.id))
            st.outbox = {state: n for state, n in sorted(cf.outbox.items()) if n}
            st.parked_channels = {
                channel: f"until {until:%Y-%m-%d %H:%M} UTC: {why}"
                for channel, (until, why) in cf.parked_channels.items()
            }
            items = [
                OpenItem(i.due_date, i.balance, i.currency)
                for i in tx.records.open_invoices(row.id)
            ]
            for aged in age(items, today):
                st.aging.append(
                    {
                        "currency": aged.currency,
                        "buckets": {
                            k: str(v) for k, v in zip(BUCKET_KEYS, aged.buckets, strict=True)
                        },
                        "counts": dict(zip(BUCKET_KEYS, aged.counts, strict=True)),
                        "total": str(aged.total),
                    }
                )
    return out


def document(statuses: Sequence[ConnectorStatus], now: datetime) -> dict[str, Any]:
    """`arsync status --json`: every connector, and whether arsync is healthy by the rule
    /healthz applies (bar the scheduler's heartbeat, which only the running daemon knows)."""
    reasons = [r for st in statuses for r in st.reasons]
    return {
        "generated_at": now.isoformat(),
        "ok": not reasons,
        "reasons": reasons,
        "connectors": [st.to_json(now) for st in statuses],
    }


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = (now - then).total_seconds()
    return f"{span(seconds)} ago" if seconds >= 0 else f"in {span(seconds)}"


def render(
    statuses: list[ConnectorStatus],
    now: datetime,
    *,
    aging_only: bool = False,
    console: Console | None = None,
) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    if aging_only:
        for st in statuses:
            _aging_table(console, st, box, Table)
        return
    if not statuses:
        console.print("No connectors: add a file to connectors/ (see the *.toml.example files).")
        return
    colour = {"ok": "green", "parked": "yellow", "failing": "yellow"}
    for st in statuses:
        head = f"[bold]{escape(st.name)}[/bold] · {PLATFORM_NAMES.get(st.platform, st.platform)}"
        if st.company:
            head += f" · {escape(st.company)}"
        console.print(head)
        health = f"[{colour.get(st.health, 'red')}]{st.health}[/]"
        if st.detail:
            health += f": {escape(st.detail)}"
        console.print(f"  health      {health}")
        if st.access_expires_at is not None:
            token = f"access token expires {_ago(st.access_expires_at, now)}"
            if st.refresh_expires_at is not None:
                token += f"; link lapses {_ago(st.refresh_expires_at, now)} unless refreshed"
            console.print(f"  token       {token}")
        if st.last_sync_at is not None:
            outcome = st.last_sync_outcome or "running"
            console.print(
                f"  last sync   {_ago(st.last_sync_at, now)} ({outcome}); "
                f"last successful {_ago(st.last_ok_at, now)}"
            )
        for reason in st.reasons:
            console.print(f"  [red]late[/]        {escape(reason.removeprefix(st.name + ': '))}")
        if st.facts is not None and st.counts:
            console.print(f"  api         {_api(st.facts)}")
        if st.counts:
            c = st.counts
            console.print(
                f"  records     {c['customers']} customers, {c['invoices']} invoices "
                f"({c['open invoices']} open), {c['payments']} payments, {c['credits']} credits"
                + (f", [yellow]{c['quarantined']} quarantined[/]" if c["quarantined"] else "")
            )
        if st.outbox:
            waiting = {k: v for k, v in st.outbox.items() if k not in ("done", "skipped")}
            said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in waiting.items())
            done, skipped = st.outbox.get("done", 0), st.outbox.get("skipped", 0)
            line = f"  outbox      {done} done, {skipped} skipped"
            if said:
                line += f"; {said}"
            console.print(line)
            if st.facts is not None and any(st.facts.today.values()):
                console.print(f"  today       {_today(st.facts)}")
            if st.outbox.get("needs_person"):
                console.print(
                    f"  [yellow]waits[/]       {st.outbox['needs_person']} action(s) wait for a "
                    "person: see `arsync outbox`, then `arsync resolve`"
                )
            if st.outbox.get("awaiting_approval"):
                console.print(
                    f"  approval    {st.outbox['awaiting_approval']} action(s) await approval: "
                    "`arsync outbox`, then `arsync approve`"
                )
            for channel, why in st.parked_channels.items():
                console.print(f"  [yellow]parked[/]      {channel}: {escape(why)}")
        if st.counts and not st.complete:
            console.print(
                "  [yellow]incomplete[/]  the first sync has not finished, so the store holds "
                "only part of the books: the figures below are not the whole picture. Run "
                f"`arsync sync {escape(st.name)}` to finish it."
            )
        _aging_table(console, st, box, Table)
        console.print()


def _api(cf: ConnectorFacts) -> str:
    said = (
        f"{cf.calls_last_hour:,} call{'s' if cf.calls_last_hour != 1 else ''} in the last hour, "
        f"{cf.calls_last_day:,} in 24 h"
    )
    if cf.day_limit is not None:
        said += f"; {cf.quota_remaining or 0:,} of the {cf.day_limit:,} a day left"
    return said


def _today(cf: ConnectorFacts) -> str:
    words = {"needs_person": "waiting for a person"}
    said = ", ".join(f"{n} {words.get(k, k)}" for k, n in cf.today.items() if n)
    return f"{said} (since midnight, {cf.zone})"


def _aging_table(console: Console, st: ConnectorStatus, box: Any, table_type: Any) -> None:
    if not st.counts:
        return
    if st.aging:
        table = table_type(box=box.SIMPLE_HEAD, show_footer=True, padding=(0, 1))
        table.add_column("  Days overdue", footer="  Total", no_wrap=True)
        for row in st.aging:
            table.add_column(row["currency"], justify="right", footer=_money(row["total"]))
        for i, (label, _, _) in enumerate(BUCKETS):
            key = BUCKET_KEYS[i]
            table.add_row(
                "  " + ("not yet due" if label == "Current" else label),
                *(_money(row["buckets"][key]) if row["counts"][key] else "–" for row in st.aging),
            )
        console.print(table)
    else:
        console.print("  Nothing is owed: no open invoices.")


def _money(text: str) -> str:
    from decimal import Decimal

    return f"{Decimal(text):,.2f}"
