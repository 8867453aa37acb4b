"""The QuickBooks Online connector: full passes, CDC increments and sweeps of open invoices.

The writer side (fresh reads, emails, notes, read-back) is in writer.py, which this class
inherits.

The cursor is this module's own JSON (`"v": 1`):

- during a full pass: `{"phase": "initial", "pass", "since", "entity", "start", "last_id",
  "gap", "home_currency", "customer_types"}`: the pass's id and its `since` (both the platform's
  time at the pass's first reply), the index of the entity being read, the next STARTPOSITION
  and the Id of the last row read, so a killed pass resumes at the next page;
- afterwards: `{"phase": "incremental", "since", "swept_at", "home_currency",
  "customer_types"}`.

Every time in it is the platform's clock (a reply's `time`), never the local one.

`customer_types` names the company's customer types by Id: a customer's CustomerTypeRef (the
"Do not chase" type a bookkeeper gives it in QuickBooks) becomes its tag by that name. They are
read (`SELECT * FROM CustomerType`, one call) once a full pass, when its first customer with a
type comes (so a company that uses no types pays nothing, and the pass's calls keep their
order), and in any cycle that meets a type the cursor does not know; a type the list still
lacks (one made inactive) is read by Id. An incremental cycle that meets only known types costs
its one CDC call.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import structlog

from arsync.connectors.base import Link, register
from arsync.connectors.http import ApiSession
from arsync.connectors.quickbooks import mapping
from arsync.connectors.quickbooks.client import MAX_RESULTS, QuickBooksClient, Row
from arsync.connectors.quickbooks.writer import QuickBooksWriter
from arsync.domain import CompanyInfo, Deleted, Item, Kind, Page
from arsync.errors import DataError, PermanentError

log = structlog.get_logger("arsync.quickbooks")

CURSOR_VERSION = 1

#: (entity, kind, stream, condition) of a full pass, in order: customers before what they owe
FULL_PASS: tuple[tuple[str, Kind, str, str], ...] = (
    # QBO hides inactive customers from a query that does not name Active.
    ("Customer", Kind.CUSTOMER, "customers", "Active IN (true, false)"),
    ("Invoice", Kind.INVOICE, "invoices", ""),
    ("Payment", Kind.PAYMENT, "payments", ""),
    ("CreditMemo", Kind.CREDIT, "credit memos", ""),
)
CONDITION = {entity: condition for entity, _kind, _stream, condition in FULL_PASS}
#: the entities one CDC call asks for (the order of the URL's `entities`)
CDC_ENTITIES = ["Invoice", "Payment", "CreditMemo", "Customer"]
#: the order in which changed records are handed over: customers before their documents
CHANGE_ORDER = ["Customer", "Invoice", "Payment", "CreditMemo"]
#: one CDC reply holds at most this many objects over all entities: a full one left some out
CDC_MAX_OBJECTS = 1000
#: how far back CDC looks
CDC_LOOKBACK = timedelta(days=30)
#: the local clock (`now`) and QBO's may disagree; a `since` this close to the limit is
#: already treated as too old, so a CDC call never asks past what QBO serves
LOOKBACK_MARGIN = timedelta(hours=1)
OPEN_INVOICES = "Balance > '0'"


def _moment(stamp: object, what: str) -> datetime:
    """A time the platform wrote (a reply's `time`, or one this cursor stored), as UTC."""
    if not isinstance(stamp, str):
        raise DataError(f"{what}: the reply carries no server time")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise DataError(f"{what}: unreadable server time {stamp!r}") from None
    if moment.tzinfo is None:
        raise DataError(f"{what}: server time without an offset {stamp!r}")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _row_id(row: Row) -> str | None:
    ident = row.get("Id")
    return str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None


@dataclass
class _Chunk:
    """One query page: its new rows and where the next page starts."""

    rows: list[Row]
    at: str | None
    last: bool
    #: rows before this page changed while paging (a deletion): some may have been skipped
    gap: bool
    next_start: int
    last_id: str | None


class QuickBooksConnector(QuickBooksWriter):
    """The reader (pull, company) and, through QuickBooksWriter, the writer of one realm."""

    platform: ClassVar[str] = "qbo"

    def __init__(self, link: Link, session: ApiSession) -> None:
        self.link = link
        self.session = session
        self.client = QuickBooksClient(session, link.tenant_id, link.api_base)
        #: (home currency,) once known; it costs a call, so it also travels in the cursor
        self._home: tuple[str | None] | None = None
        #: customer type names by Id, once known; they also travel in the cursor
        self._types: dict[str, str] | None = None
        #: whether this cycle has read the types already, and the Ids no read could name
        self._types_read = False
        self._types_unknown: set[str] = set()
        #: a full pass reads the names again (they may have changed) at its first typed customer
        self._types_due = False

    # -- the company -------------------------------------------------------------------------------
    def company(self) -> CompanyInfo:
        """CompanyInfo and Preferences: name, country and region, home currency. QBO has no
        time-zone field anywhere (the connector file names the zone)."""
        info = self.client.company_info()
        name = info.get("CompanyName")
        if not isinstance(name, str) or not name.strip():
            raise DataError("QuickBooks company info: no CompanyName")
        self._home = (mapping.home_currency_of(self.client.preferences()),)
        return CompanyInfo(
            name=name,
            base_currency=self._home[0],
            country=mapping.country_of(info),
            region=mapping.region_of(info),
        )

    # -- customer types ----------------------------------------------------------------------------
    def _read_types(self) -> None:
        """Every customer type's name (one query), as this cycle's own read."""
        names: dict[str, str] = {}
        for row in self.client.customer_types():
            named = mapping.customer_type_name(row)
            if named is not None:
                names[named[0]] = named[1]
        self._types = names
        self._types_read = True

    def _know_types(self, rows: Iterable[Row]) -> None:
        """Make sure the types of these customer rows are named: read the types again (once a
        cycle) when one is new, then read by Id a type the list still lacks (an inactive one)."""
        wanted = {t for t in map(mapping.customer_type_id, rows) if t is not None}
        if wanted and self._types_due and not self._types_read:
            self._read_types()
        known = self._types if self._types is not None else {}
        missing = wanted - set(known) - self._types_unknown
        if not missing:
            return
        if not self._types_read:
            self._read_types()
            known = self._types if self._types is not None else {}
            missing -= set(known)
        for type_id in sorted(missing):
            row = self.client.customer_type(type_id)
            named = mapping.customer_type_name(row) if row is not None else None
            if named is None:
                self._types_unknown.add(type_id)
                log.warning(
                    "a customer has a customer type QuickBooks does not name; no tag for it",
                    connector=self.link.name,
                    customer_type=type_id,
                )
                continue
            known[named[0]] = named[1]
        self._types = known

    def _record(self, entity: str, row: Row, home: str | None) -> Item:
        return mapping.record(entity, row, home, self._types)

    def _records(self, entity: str, rows: list[Row], home: str | None) -> list[Item]:
        if entity == "Customer":
            self._know_types(rows)
        return [self._record(entity, row, home) for row in rows]

    def _home_currency(self) -> str | None:
        if self._home is None:
            self._home = (mapping.home_currency_of(self.client.preferences()),)
        return self._home[0]

    # -- pulling -----------------------------------------------------------------------------------
    def pull(
        self,
        state: Mapping[str, Any] | None,
        *,
        full: bool,
        force_sweep: bool,
        local_open: Callable[[], set[str]],
        now: datetime,
    ) -> Iterator[Page]:
        if state is not None and state.get("v") != CURSOR_VERSION:
            state = None  # a cursor this code did not write: start over with a full pass
        if state is not None and "home_currency" in state and self._home is None:
            home = state["home_currency"]
            self._home = (home if isinstance(home, str) else None,)
        self._types_read, self._types_unknown, self._types_due = False, set(), False
        if state is not None and self._types is None:
            types = state.get("customer_types")
            if isinstance(types, dict):
                self._types = {str(k): v for k, v in types.items() if isinstance(v, str)}
        phase = state.get("phase") if state is not None else None
        if full or state is None or phase != "incremental":
            self._types_due = True
            if state is not None and not full and phase == "initial":
                yield from self._full_pass(state, self._home_currency(), None)
            else:
                yield from self._new_pass()
            return
        home = self._home_currency()
        try:
            since = _moment(state.get("since"), "QuickBooks cursor")
        except DataError:
            since = None
        if since is None or since < now - (CDC_LOOKBACK - LOOKBACK_MARGIN):
            # CDC cannot look back that far: only a full pass sees everything again.
            yield from self._new_pass()
            return
        try:
            cursor = yield from self._incremental(state, since, home)
        except PermanentError as err:
            if not _refused_since(err):
                raise
            # QBO's clock says `since` is past CDC's 30 days although ours did not (the clocks
            # disagree by more than the margin): a full pass sees everything again.
            log.warning(
                "change data capture refused the cursor's time; starting a full pass",
                connector=self.link.name,
                since=since.isoformat(),
            )
            yield from self._new_pass()
            return
        try:
            swept_at: datetime | None = _moment(state.get("swept_at"), "QuickBooks cursor")
        except DataError:
            swept_at = None
        if force_sweep or swept_at is None or now - swept_at >= self.link.sweep_every:
            yield from self._sweep(cursor, local_open, home)

    def _new_pass(self) -> Iterator[Page]:
        """A full pass from the top, the company (and its home currency) read again first."""
        company = self.company()
        self._types_due = True
        yield from self._full_pass(None, self._home_currency(), company)

    # -- paging ------------------------------------------------------------------------------------
    def _pages(
        self, entity: str, where: str, start: int = 1, last_id: str | None = None
    ) -> Iterator[_Chunk]:
        """Query pages of `entity` ordered by Id, each asked from the previous page's last row.

        Paging by position skips a row whenever a row before the position is deleted between two
        pages. Asking each page from the previous page's last row shows it: that row comes back
        first unless something before it moved.
        """
        while True:
            rows, at = self.client.query_page(entity, where, start)
            fresh, gap = rows, False
            if last_id is not None:
                if rows and _row_id(rows[0]) == last_id:
                    fresh = rows[1:]
                else:
                    gap = True
            last = len(rows) < MAX_RESULTS
            if rows:
                last_id = _row_id(rows[-1])
            next_start = start + len(rows) - 1
            yield _Chunk(fresh, at, last, gap, next_start, last_id)
            if last:
                return
            start = next_start

    # -- the full pass -----------------------------------------------------------------------------
    def _full_pass(
        self, resume: Mapping[str, Any] | None, home: str | None, company: CompanyInfo | None
    ) -> Iterator[Page]:
        pass_id: str | None = None
        since: str | None = None
        index, start, last_id, gap = 0, 1, None, False
        if resume is not None and isinstance(resume.get("pass"), str):
            try:
                pass_id = resume["pass"]
                since = _iso(_moment(resume.get("since"), "QuickBooks cursor"))
                index, start = int(resume["entity"]), int(resume["start"])
                last_id = resume.get("last_id")
                gap = bool(resume.get("gap", False))
            except (DataError, KeyError, TypeError, ValueError):
                pass_id = None
            if pass_id is None or not 0 <= index < len(FULL_PASS) or start < 1:
                # An unreadable cursor: this pass starts again from the top.
                pass_id = since = None
                index, start, last_id, gap = 0, 1, None, False
        for i in range(index, len(FULL_PASS)):
            entity, kind, stream, where = FULL_PASS[i]
            if i != index:
                start, last_id, gap = 1, None, False
            for chunk in self._pages(entity, where, start, last_id):
                if pass_id is None or since is None:
                    # Fixed at the pass's first reply: whatever changes after it, CDC will show.
                    since = pass_id = _iso(_moment(chunk.at, "QuickBooks query"))
                gap = gap or chunk.gap
                items = self._records(entity, chunk.rows, home)
                if chunk.last and i == len(FULL_PASS) - 1:
                    cursor = self._incremental_cursor(since, since, home)
                elif chunk.last:
                    cursor = self._pass_cursor(pass_id, since, i + 1, 1, None, False, home)
                else:
                    cursor = self._pass_cursor(
                        pass_id, since, i, chunk.next_start, chunk.last_id, gap, home
                    )
                # A pass that may have skipped rows cannot say what is gone: it says nothing.
                completed = frozenset({kind}) if chunk.last and not gap else frozenset()
                yield Page(
                    stream=stream,
                    items=items,
                    cursor=cursor,
                    full_pass=pass_id,
                    completed=completed,
                    company=company,
                )
                company = None  # stored with the pass's first page

    def _pass_cursor(
        self,
        pass_id: str,
        since: str,
        entity: int,
        start: int,
        last_id: str | None,
        gap: bool,
        home: str | None,
    ) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "phase": "initial",
            "pass": pass_id,
            "since": since,
            "entity": entity,
            "start": start,
            "last_id": last_id,
            "gap": gap,
            "home_currency": home,
            "customer_types": dict(self._types) if self._types is not None else None,
        }

    def _incremental_cursor(
        self, since: str, swept_at: str | None, home: str | None
    ) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "phase": "incremental",
            "since": since,
            "swept_at": swept_at,
            "home_currency": home,
            "customer_types": dict(self._types) if self._types is not None else None,
        }

    # -- increments --------------------------------------------------------------------------------
    def _incremental(
        self, state: Mapping[str, Any], since: datetime, home: str | None
    ) -> Generator[Page, None, dict[str, Any]]:
        """One CDC call; more only when its reply is full. Returns the final cursor."""
        swept = state.get("swept_at")
        swept_at = swept if isinstance(swept, str) else None
        changed, at = self.client.cdc(CDC_ENTITIES, since)
        # Every entity was asked at or after this time, so nothing from it on can be missed.
        new_since = _iso(_moment(at, "QuickBooks change data capture"))
        if sum(len(rows) for rows in changed.values()) < CDC_MAX_OBJECTS:
            items = [
                item
                for entity in CHANGE_ORDER
                for item in self._records(entity, changed.get(entity, []), home)
            ]
            final = self._incremental_cursor(new_since, swept_at, home)
            yield Page(stream="changes", items=items, cursor=final)
            return final
        # The reply is full, so some changes were left out: every entity on its own. Until the
        # last page the cursor keeps the old `since`, so a sync killed half-way asks again.
        gap = False
        pending: list[Item] | None = None
        for items, chunk_gap in self._saturated(since, home):
            gap = gap or chunk_gap
            if not items:
                continue
            if pending is not None:
                unchanged = self._incremental_cursor(_iso(since), swept_at, home)
                yield Page(stream="changes", items=pending, cursor=unchanged)
            pending = items
        # A page skipped while paging a query: keep `since`, so the next sync reads it again.
        final = self._incremental_cursor(_iso(since) if gap else new_since, swept_at, home)
        yield Page(stream="changes", items=pending or [], cursor=final)
        return final

    def _saturated(self, since: datetime, home: str | None) -> Iterator[tuple[list[Item], bool]]:
        """(items, gap) per entity, or per query page for an entity with too many changes."""
        for entity in CHANGE_ORDER:
            changed, _at = self.client.cdc([entity], since)
            rows = changed.get(entity, [])
            if len(rows) < CDC_MAX_OBJECTS:
                yield self._records(entity, rows, home), False
                continue
            # Still full on its own: read what changed with a query instead. A query cannot see
            # deletions; those in this reply are kept, later ones are missed here. The sweep of
            # open invoices catches a deleted open invoice, the next full pass everything else.
            yield [mapping.deleted(entity, row) for row in rows if mapping.is_deleted(row)], False
            where = f"MetaData.LastUpdatedTime >= '{since.isoformat(timespec='seconds')}'"
            if CONDITION[entity]:
                where = f"{where} AND {CONDITION[entity]}"
            for chunk in self._pages(entity, where):
                yield self._records(entity, chunk.rows, home), chunk.gap

    # -- the sweep of open invoices ----------------------------------------------------------------
    def _sweep(
        self, cursor: dict[str, Any], local_open: Callable[[], set[str]], home: str | None
    ) -> Iterator[Page]:
        """Every open invoice, then the ones held open locally that QBO no longer lists as open.

        Change feeds miss some changes; this catches them. Until its last page the cursor keeps
        the old `swept_at`, so a sweep killed half-way simply runs again next time.
        """
        seen: set[str] = set()
        started: str | None = None
        for chunk in self._pages("Invoice", OPEN_INVOICES):
            if started is None:
                started = _iso(_moment(chunk.at, "QuickBooks query"))
            seen.update(i for i in map(_row_id, chunk.rows) if i is not None)
            items: list[Item] = [mapping.invoice(row, home) for row in chunk.rows]
            page_cursor = cursor
            if chunk.last:
                missing = set(local_open()) - seen
                found = self.client.invoices_by_id(missing)
                items.extend(mapping.invoice(row, home) for row in found)
                gone = missing - {i for i in map(_row_id, found) if i is not None}
                items.extend(Deleted(Kind.INVOICE, i) for i in sorted(gone))
                page_cursor = {**cursor, "swept_at": started}
            yield Page(stream="open invoices", items=items, cursor=page_cursor)


def _refused_since(err: PermanentError) -> bool:
    """Whether a refusal is QBO's about changedSince (CDC's 30-day limit)."""
    body = err.body
    fault = body.get("Fault") if isinstance(body, dict) else None
    errors = fault.get("Error") if isinstance(fault, dict) else None
    if not isinstance(errors, list):
        return False
    for error in errors:
        if not isinstance(error, dict):
            continue
        said = " ".join(str(error.get(k, "")) for k in ("element", "Message", "Detail"))
        if "changedsince" in said.lower():
            return True
    return False


register("qbo", QuickBooksConnector)
