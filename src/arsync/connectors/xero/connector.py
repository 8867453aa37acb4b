"""The Xero connector: full passes, If-Modified-Since cycles and sweeps of the open invoices.

Cursor state (JSON, version 1). Every time in it is Xero's own clock (a reply's `Date` header)
less one second, because If-Modified-Since is read to the second:

    full pass   {"v": 1, "phase": "initial", "pass": id, "since": t, "endpoint": i, "page": n}
    at rest     {"v": 1, "phase": "incremental", "since": {"Invoices": t, "Contacts": t,
                 "Payments": t, "CreditNotes": t}, "swept_at": t}
    mid-cycle   the same plus "cycle": {"steps": [...], "step": i, "page": n, "pending": t,
                 "sweep_at": t, "recheck": [ids]}

A cycle's steps are endpoints ("Invoices", "Contacts", "Payments", "CreditNotes") read with
If-Modified-Since, and for a sweep "open" (every AUTHORISED sales invoice) and "recheck" (the
invoices the store holds as open that "open" did not list, re-read by id). An endpoint's new
`since` is held in "pending" until its last page, so a killed cycle resumes at the page it
reached and never skips a change.

Contact groups are a bookkeeper's labels (a "Do not chase" group pauses a customer). Whether
joining one moves a contact's UpdatedDateUTC is unknown, so If-Modified-Since cannot be trusted
with them: the last page of a full pass and of a sweep also carries every contact's groups,
read then (GET /ContactGroups, and GET /ContactGroups/{id} for each active group: one call
each, whatever its size) as the page's complete `tags`; every contact is stored by then. Between
sweeps, a contact that changed for any reason comes with its own ContactGroups (paged lists
carry them). The cursor does not change: a pass or sweep killed before its last page is
committed reads the groups when it resumes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from arsync.connectors.base import Link, register
from arsync.connectors.http import ApiSession
from arsync.connectors.xero import mapping
from arsync.connectors.xero.client import (
    IDS_PER_CALL,
    PAGE_SIZE,
    Row,
    XeroClient,
    parse_xero_date,
)
from arsync.connectors.xero.writer import XeroWriter
from arsync.domain import CompanyInfo, Deleted, Item, Kind, Page
from arsync.errors import DataError

_log = logging.getLogger(__name__)

VERSION = 1
#: If-Modified-Since is to the second: step back one so nothing stamped in the reply's own
#: second is missed (a record seen twice is harmless, one never seen is not)
OVERLAP = timedelta(seconds=1)
SALES_INVOICES = 'Type=="ACCREC"'


@dataclass(frozen=True)
class Stream:
    """One list endpoint as arsync reads it."""

    endpoint: str
    kind: Kind
    name: str  # Page.stream
    map: Callable[[Row], mapping.Mapped]
    where: str | None
    summary_only: bool = False
    extra: tuple[tuple[str, str], ...] = ()


STREAMS: dict[str, Stream] = {
    s.endpoint: s
    for s in (
        # Archived contacts still owe money; without includeArchived Xero hides them.
        Stream(
            "Contacts",
            Kind.CUSTOMER,
            "contacts",
            mapping.contact,
            None,
            extra=(("includeArchived", "true"),),
        ),
        # summaryOnly drops line items and nested payments, none of which the mapping reads.
        Stream(
            "Invoices", Kind.INVOICE, "invoices", mapping.invoice, SALES_INVOICES, summary_only=True
        ),
        Stream(
            "Payments", Kind.PAYMENT, "payments", mapping.payment, 'PaymentType=="ACCRECPAYMENT"'
        ),
        Stream(
            "CreditNotes", Kind.CREDIT, "credit notes", mapping.credit_note, 'Type=="ACCRECCREDIT"'
        ),
    )
}
FULL_ORDER = ("Contacts", "Invoices", "Payments", "CreditNotes")
SWEEP_STEPS = ["open", "recheck", "Payments", "CreditNotes"]


class XeroConnector(XeroWriter):
    """One Xero organisation, pulled as pages of records with their cursor; written to through
    the writer side it takes from `XeroWriter` (the dispatcher's `Writer`)."""

    platform: ClassVar[str] = "xero"

    def __init__(self, link: Link, session: ApiSession) -> None:
        self.link = link
        self.session = session
        self.client = XeroClient(session, link.tenant_id, link.api_base)

    def company(self) -> CompanyInfo:
        """The organisation (GET /Organisation): name, base currency, country, time zone."""
        return mapping.organisation(self.client.organisation())

    # -- pulling ----------------------------------------------------------------------------------
    def pull(
        self,
        state: Mapping[str, Any] | None,
        *,
        full: bool,
        force_sweep: bool,
        local_open: Callable[[], set[str]],
        now: datetime,
    ) -> Iterator[Page]:
        if full or state is None:
            yield from self._full_pass(None, self.company())
            return
        try:
            phase = _phase(state)
        except (KeyError, TypeError, ValueError) as err:
            # A cursor this code cannot read (another version, a damaged row): a full pass
            # re-reads everything and loses nothing.
            _log.warning(
                "xero %s: unreadable cursor (%s); starting a full pass", self.link.name, err
            )
            yield from self._full_pass(None, self.company())
            return
        if phase == "initial":
            yield from self._full_pass(state, None)
            return
        yield from self._incremental(state, force_sweep=force_sweep, local_open=local_open, now=now)

    # -- the full pass ----------------------------------------------------------------------------
    def _full_pass(
        self, resume: Mapping[str, Any] | None, company: CompanyInfo | None
    ) -> Iterator[Page]:
        pass_id: str | None = None
        since: datetime | None = None
        index, page = 0, 1
        if resume is not None:
            pass_id = str(resume["pass"])
            since = _time(resume["since"])
            index, page = int(resume["endpoint"]), int(resume["page"])
        while index < len(FULL_ORDER):
            stream = STREAMS[FULL_ORDER[index]]
            rows, pagination, at = self._list(stream, page)
            if pass_id is None or since is None:
                # Fixed at the pass's first reply: the incremental that follows starts there.
                pass_id, since = uuid.uuid4().hex, at - OVERLAP
            last = _is_last(rows, pagination, page)
            if last:
                index, page = index + 1, 1
            else:
                page += 1
            # The pass's last page: every contact is stored, their groups come with it.
            tags = self._tags() if index >= len(FULL_ORDER) else None
            if index < len(FULL_ORDER):
                cursor: dict[str, Any] = {
                    "v": VERSION,
                    "phase": "initial",
                    "pass": pass_id,
                    "since": since.isoformat(),
                    "endpoint": index,
                    "page": page,
                }
            else:
                cursor = _at_rest({name: since for name in FULL_ORDER}, since)
            yield Page(
                stream=stream.name,
                items=_mapped(stream, rows),
                cursor=cursor,
                full_pass=pass_id,
                completed=frozenset({stream.kind}) if last else frozenset(),
                total=_item_count(pagination),
                company=company,
                tags=tags,
            )
            company = None  # stored with the pass's first page

    # -- incremental cycles and sweeps ------------------------------------------------------------
    def _incremental(
        self,
        state: Mapping[str, Any],
        *,
        force_sweep: bool,
        local_open: Callable[[], set[str]],
        now: datetime,
    ) -> Iterator[Page]:
        since = {name: _time(state["since"][name]) for name in FULL_ORDER}
        swept_at = _time(state["swept_at"])
        cycle = state.get("cycle")
        if cycle is not None:
            planned_sweep = "open" in cycle["steps"]
            since, swept_at = yield from self._cycle(since, swept_at, cycle, local_open)
            if planned_sweep or not force_sweep:
                return
            # The cycle resumed was planned before this sweep was asked for: run one more.
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        sweep = force_sweep or now - swept_at >= self.link.sweep_every
        steps = ["Invoices", "Contacts"] + (SWEEP_STEPS if sweep else [])
        fresh = {"steps": steps, "step": 0, "page": 1, "pending": None, "sweep_at": None}
        yield from self._cycle(since, swept_at, fresh, local_open)

    def _cycle(
        self,
        since: dict[str, datetime],
        swept_at: datetime,
        cycle: Mapping[str, Any],
        local_open: Callable[[], set[str]],
    ) -> Generator[Page, None, tuple[dict[str, datetime], datetime]]:
        since = dict(since)
        steps = [str(s) for s in cycle["steps"]]
        index, page = int(cycle["step"]), int(cycle["page"])
        pending = _time(cycle["pending"]) if cycle.get("pending") else None
        sweep_at = _time(cycle["sweep_at"]) if cycle.get("sweep_at") else None
        recheck: list[str] | None = (
            [str(i) for i in cycle["recheck"]] if cycle.get("recheck") is not None else None
        )
        if index < len(steps) and steps[index] == "open" and page > 1:
            # The ids listed on the pages before the kill were not kept, and the recheck needs
            # them all: listing again from page 1 costs fewer calls than re-reading them by id.
            page = 1
        seen: set[str] = set()
        finished = False
        sweep = "open" in steps
        while index < len(steps):
            step = steps[index]
            total: int | None = None
            tags: Mapping[str, tuple[str, ...]] | None = None
            if step in STREAMS:
                stream = STREAMS[step]
                rows, pagination, at = self._list(stream, page, since[step])
                if pending is None:
                    pending = at - OVERLAP
                items = _mapped(stream, rows)
                name = stream.name
                total = _item_count(pagination)
                if step == "Invoices" and "Payments" not in steps and _news(rows, since[step]):
                    # A payment or a credit moves its invoice's UpdatedDateUTC; with no invoice
                    # changed there is nothing new to find there (the sweep reads them anyway).
                    steps += ["Payments", "CreditNotes"]
                if _is_last(rows, pagination, page):
                    since[step], pending = pending, None
                    index, page = index + 1, 1
                else:
                    page += 1
            elif step == "open":
                rows, pagination, at = self.client.page(
                    "Invoices", page, where=SALES_INVOICES, statuses="AUTHORISED", summary_only=True
                )
                if sweep_at is None:
                    sweep_at = at - OVERLAP
                seen.update(_ids(rows))
                items = _mapped(STREAMS["Invoices"], rows)
                name = "open invoices"
                total = _item_count(pagination)
                if _is_last(rows, pagination, page):
                    # Taken before this page is committed, which cannot change the answer:
                    # every invoice on the page is in `seen`.
                    recheck = sorted({i for i in local_open() if i.lower() not in seen})
                    index, page = index + 1, 1
                else:
                    page += 1
            else:  # "recheck"
                if not recheck:
                    recheck = None
                    index += 1
                    continue
                chunk, rest = recheck[:IDS_PER_CALL], recheck[IDS_PER_CALL:]
                rows = self.client.invoices_by_id(chunk)
                returned = _ids(rows)
                items = _mapped(STREAMS["Invoices"], rows)
                # Xero no longer knows these at all: gone as surely as a DELETED invoice.
                items += [Deleted(Kind.INVOICE, i) for i in chunk if i.lower() not in returned]
                name = "open invoices"
                recheck = rest or None
                if not rest:
                    index += 1
            finished = index >= len(steps)
            if finished:
                if sweep_at is not None:
                    swept_at = sweep_at
                cursor = _at_rest(since, swept_at)
                if sweep:
                    tags = self._tags()  # the sweep's last page: every contact's groups
            else:
                cursor = _at_rest(since, swept_at)
                cursor["cycle"] = {
                    "steps": list(steps),  # a copy: later steps must not rewrite this cursor
                    "step": index,
                    "page": page,
                    "pending": pending.isoformat() if pending else None,
                    "sweep_at": sweep_at.isoformat() if sweep_at else None,
                    "recheck": recheck,
                }
            yield Page(stream=name, items=items, cursor=cursor, total=total, tags=tags)
        if not finished:
            # The last steps had nothing to call for: the state at rest still has to be stored.
            if sweep_at is not None:
                swept_at = sweep_at
            yield Page(
                stream="changes",
                items=[],
                cursor=_at_rest(since, swept_at),
                tags=self._tags() if sweep else None,
            )
        return since, swept_at

    def _tags(self) -> dict[str, tuple[str, ...]] | None:
        """Every contact's ACTIVE groups by name, read in one go: 1 + one call per group.

        None (the page says nothing of labels) when a group cannot be read: a partial map would
        take the labels off every member of the group that was not read.
        """
        members: dict[str, set[str]] = {}
        try:
            for row in self.client.contact_groups():
                listed = mapping.contact_group(row)
                if listed is None:
                    continue  # DELETED: labels nobody
                group_id, name = listed
                group = self.client.contact_group(group_id)
                if group is None:
                    continue  # deleted since it was listed
                for contact_id in mapping.group_members(group):
                    members.setdefault(contact_id, set()).add(name)
        except DataError as err:
            _log.warning(
                "xero %s: contact groups unreadable (%s); labels left as they were",
                self.link.name,
                err,
            )
            return None
        return {contact_id: tuple(sorted(names)) for contact_id, names in members.items()}

    def _list(
        self, stream: Stream, page: int, modified_since: datetime | None = None
    ) -> tuple[list[Row], dict[str, Any] | None, datetime]:
        return self.client.page(
            stream.endpoint,
            page,
            where=stream.where,
            modified_since=modified_since,
            summary_only=stream.summary_only,
            **dict(stream.extra),
        )


# -- helpers --------------------------------------------------------------------------------------
def _phase(state: Mapping[str, Any]) -> str:
    """The cursor's phase, once every part of it has been checked readable."""
    if state.get("v") != VERSION:
        raise ValueError(f"cursor version {state.get('v')!r}")
    phase = state["phase"]
    if phase == "initial":
        str(state["pass"])
        _time(state["since"])
        if not 0 <= int(state["endpoint"]) < len(FULL_ORDER) or int(state["page"]) < 1:
            raise ValueError("full pass position out of range")
    elif phase == "incremental":
        for name in FULL_ORDER:
            _time(state["since"][name])
        _time(state["swept_at"])
        cycle = state.get("cycle")
        if cycle is not None:
            steps = cycle["steps"]
            if not isinstance(steps, list) or any(
                s not in STREAMS and s not in ("open", "recheck") for s in steps
            ):
                raise ValueError(f"unknown cycle steps {steps!r}")
            if int(cycle["step"]) < 0 or int(cycle["page"]) < 1:
                raise ValueError("cycle position out of range")
            for key in ("pending", "sweep_at"):
                if cycle.get(key) is not None:
                    _time(cycle[key])
            if cycle.get("recheck") is not None and not isinstance(cycle["recheck"], list):
                raise ValueError("recheck is not a list of ids")
    else:
        raise ValueError(f"unknown phase {phase!r}")
    return str(phase)


def _time(raw: Any) -> datetime:
    moment = datetime.fromisoformat(str(raw))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _at_rest(since: Mapping[str, datetime], swept_at: datetime) -> dict[str, Any]:
    return {
        "v": VERSION,
        "phase": "incremental",
        "since": {name: since[name].isoformat() for name in FULL_ORDER},
        "swept_at": swept_at.isoformat(),
    }


def _is_last(rows: list[Row], pagination: Mapping[str, Any] | None, page: int) -> bool:
    """A short page is the last; so is the page Xero's pagination counts as the last."""
    size = PAGE_SIZE
    if pagination:
        served = _count(pagination.get("pageSize"))
        if served:
            size = served  # Xero serves its own cap when asked for more, and says so here
        pages = _count(pagination.get("pageCount"))
        if pages is not None and page >= pages:
            return True
    return len(rows) < size


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _item_count(pagination: Mapping[str, Any] | None) -> int | None:
    return _count(pagination.get("itemCount")) if pagination else None


def _mapped(stream: Stream, rows: list[Row]) -> list[Item]:
    # None: a row that is not arsync's (a bill, a supplier payment): dropped here.
    return [item for item in map(stream.map, rows) if item is not None]


def _news(rows: list[Row], since: datetime) -> bool:
    """Whether an invoice changed after the previous cycle read them: `since` overlaps that
    read by OVERLAP, so invoices already seen come back and must not count as news."""
    seen_until = since + OVERLAP
    for row in rows:
        raw = row.get("UpdatedDateUTC")
        try:
            if not isinstance(raw, str) or parse_xero_date(raw) >= seen_until:
                return True
        except DataError:
            return True
    return False


def _ids(rows: list[Row]) -> set[str]:
    return {str(row["InvoiceID"]).lower() for row in rows if isinstance(row.get("InvoiceID"), str)}


register("xero", XeroConnector)
