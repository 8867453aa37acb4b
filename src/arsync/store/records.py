"""Records: customers, invoices, payments and credits, with the cursor that says how far they go.

`apply_page` is the one place records enter the store: in the caller's transaction it upserts the
page's records (recording what changed in the append-only `events` table), files quarantined
rows, marks records missing from a completed full pass as deleted, and writes the connector's
cursor. Either all of a page lands with its cursor, or none of it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    Row,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)

from arsync.domain import (
    Allocation,
    Credit,
    Customer,
    Deleted,
    DocStatus,
    Invoice,
    InvoiceStatus,
    Kind,
    Page,
    Payment,
    Quarantined,
    Record,
)
from arsync.store.engine import dumps
from arsync.store.models import RecordCounts
from arsync.store.schema import (
    BUSINESS,
    credits,
    cursors,
    customers,
    events,
    invoices,
    payments,
    quarantine,
)
from arsync.store.types import Amount, UtcDateTime, to_units

if TYPE_CHECKING:
    from arsync.store.unit import Tx

#: ids per IN (...) query: well under SQLite's and PostgreSQL's bind-parameter limits
CHUNK = 500


# -- records as rows ----------------------------------------------------------------------------
def _allocs(allocations: Sequence[Allocation]) -> list[list[str]]:
    return [[a.invoice_id, str(a.amount)] for a in allocations]


def row_of(record: Record) -> dict[str, Any]:
    """The columns a record fills (without connector_id and bookkeeping columns)."""
    if isinstance(record, Invoice):
        return {
            "external_id": record.id,
            "number": record.number,
            "customer_id": record.customer_id,
            "issue_date": record.issue_date,
            "due_date": record.due_date,
            "currency": record.currency,
            "total": record.total,
            "balance": record.balance,
            "status": record.status.value,
            "sent": record.sent,
            "expected_date": record.expected_date,
            "updated_at": record.updated_at,
        }
    if isinstance(record, Customer):
        return {
            "external_id": record.id,
            "name": record.name,
            "email": record.email,
            "phone": record.phone,
            "currency": record.currency,
            "active": record.active,
            "country": record.country,
            "region": record.region,
            "tags": sorted(record.tags),
            "notes": record.notes,
            "updated_at": record.updated_at,
        }
    if isinstance(record, Payment):
        return {
            "external_id": record.id,
            "customer_id": record.customer_id,
            "date": record.date,
            "currency": record.currency,
            "amount": record.amount,
            "unapplied": record.unapplied,
            "status": record.status.value,
            "allocations": _allocs(record.allocations),
            "updated_at": record.updated_at,
        }
    return {
        "external_id": record.id,
        "number": record.number,
        "customer_id": record.customer_id,
        "date": record.date,
        "currency": record.currency,
        "total": record.total,
        "remaining": record.remaining,
        "status": record.status.value,
        "allocations": _allocs(record.allocations),
        "updated_at": record.updated_at,
    }


def _kind(record: Record) -> Kind:
    if isinstance(record, Invoice):
        return Kind.INVOICE
    if isinstance(record, Customer):
        return Kind.CUSTOMER
    if isinstance(record, Payment):
        return Kind.PAYMENT
    if isinstance(record, Credit):
        return Kind.CREDIT
    raise TypeError(f"not a record: {record!r}")  # pragma: no cover


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def invoice_of(row: Any) -> Invoice:
    return Invoice(
        id=row.external_id,
        number=row.number,
        customer_id=row.customer_id,
        issue_date=row.issue_date,
        due_date=row.due_date,
        currency=row.currency,
        total=row.total,
        balance=row.balance,
        status=InvoiceStatus(row.status),
        sent=row.sent,
        updated_at=row.updated_at,
        expected_date=row.expected_date,
    )


def record_of(kind: Kind, row: Any) -> Record:
    """A stored row as the domain record it was made from."""
    if kind is Kind.INVOICE:
        return invoice_of(row)
    if kind is Kind.CUSTOMER:
        return Customer(
            id=row.external_id,
            name=row.name,
            email=row.email,
            phone=row.phone,
            currency=row.currency,
            active=row.active,
            updated_at=row.updated_at,
            country=row.country,
            region=row.region,
            tags=tuple(row.tags or ()),
            notes=row.notes,
        )
    allocations = tuple(Allocation(a[0], Decimal(a[1])) for a in row.allocations)
    if kind is Kind.PAYMENT:
        return Payment(
            id=row.external_id,
            customer_id=row.customer_id,
            date=row.date,
            currency=row.currency,
            amount=row.amount,
            unapplied=row.unapplied,
            status=DocStatus(row.status),
            allocations=allocations,
            updated_at=row.updated_at,
        )
    return Credit(
        id=row.external_id,
        number=row.number,
        customer_id=row.customer_id,
        date=row.date,
        currency=row.currency,
        total=row.total,
        remaining=row.remaining,
        status=DocStatus(row.status),
        allocations=allocations,
        updated_at=row.updated_at,
    )


@dataclass
class PageOutcome:
    created: int = 0
    changed: int = 0
    deleted: int = 0
    quarantined: int = 0
    unchanged: int = 0

    @property
    def touched(self) -> int:
        return self.created + self.changed + self.deleted


class RecordsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    # -- the page -----------------------------------------------------------------------------
    def apply_page(self, connector_id: int, sync_id: int | None, page: Page) -> PageOutcome:
        """Records, quarantine, deletions and the cursor of one page, in this transaction."""
        conn, now = self._conn, self._tx.now
        outcome = PageOutcome()
        records: dict[Kind, dict[str, Record]] = {}
        gone: dict[Kind, dict[str, Deleted]] = {}
        held: list[Quarantined] = []
        for item in page.items:
            if isinstance(item, Deleted):
                gone.setdefault(item.kind, {})[item.id] = item
                records.get(item.kind, {}).pop(item.id, None)
            elif isinstance(item, Quarantined):
                held.append(item)
            else:
                kind = _kind(item)
                records.setdefault(kind, {})[item.id] = item  # the last copy of an id wins
                gone.get(kind, {}).pop(item.id, None)
        for kind, by_id in records.items():
            self._upsert(conn, connector_id, sync_id, kind, by_id, page.full_pass, now, outcome)
        for kind, dead in gone.items():
            self._delete(conn, connector_id, sync_id, kind, list(dead.values()), now, outcome)
        if held:
            conn.execute(
                insert(quarantine),
                [
                    {
                        "connector_id": connector_id,
                        "sync_id": sync_id,
                        "at": now,
                        "entity": q.kind.value,
                        "external_id": q.id,
                        "reason": q.reason,
                        "payload": dict(q.raw),
                        "resolved": False,
                    }
                    for q in held
                ],
            )
            outcome.quarantined += len(held)
        if page.tags is not None:
            self._retag(conn, connector_id, sync_id, page.tags, now, outcome)
        if page.full_pass is not None:
            for kind in page.completed:
                self._sweep_unseen(conn, connector_id, sync_id, kind, page.full_pass, now, outcome)
        self._write_cursor(conn, connector_id, sync_id, page.cursor, now)
        return outcome

    def _retag(
        self,
        conn: Connection,
        connector_id: int,
        sync_id: int | None,
        tags: Mapping[str, tuple[str, ...]],
        now: datetime,
        outcome: PageOutcome,
    ) -> None:
        """Every customer's labels as read in one go: a customer not named has none."""
        c = customers.c
        rows = conn.execute(
            select(c.external_id, c.tags).where(c.connector_id == connector_id, ~c.deleted)
        ).all()
        moved: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        for ext_id, old in rows:
            new = sorted(tags.get(ext_id, ()))
            if sorted(old or ()) == new:
                continue
            moved.append({"v_tags": new, "k_connector_id": connector_id, "k_external_id": ext_id})
            log.append(
                self._event(
                    connector_id,
                    sync_id,
                    now,
                    Kind.CUSTOMER,
                    ext_id,
                    "changed",
                    {"tags": [sorted(old or ()), new]},
                )
            )
        if moved:
            conn.execute(
                update(customers)
                .where(
                    c.connector_id == bindparam("k_connector_id"),
                    c.external_id == bindparam("k_external_id"),
                )
                .values(tags=bindparam("v_tags")),
                moved,
            )
            bulk_insert(conn, events, log)
            outcome.changed += len(moved)

    def cursor(self, connector_id: int) -> dict[str, Any] | None:
        state = self._conn.execute(
            select(cursors.c.state).where(cursors.c.connector_id == connector_id)
        ).scalar_one_or_none()
        return dict(state) if state is not None else None

    def _write_cursor(
        self,
        conn: Connection,
        connector_id: int,
        sync_id: int | None,
        state: dict[str, Any],
        now: datetime,
    ) -> None:
        done = conn.execute(
            update(cursors)
            .where(cursors.c.connector_id == connector_id)
            .values(state=state, updated_at=now, sync_id=sync_id)
        )
        if done.rowcount == 0:
            conn.execute(
                insert(cursors).values(
                    connector_id=connector_id, state=state, updated_at=now, sync_id=sync_id
                )
            )

    def _existing(
        self, conn: Connection, table: Table, connector_id: int, ids: Sequence[str]
    ) -> dict[str, Row[Any]]:
        found: dict[str, Row[Any]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for row in conn.execute(
                select(table).where(
                    table.c.connector_id == connector_id, table.c.external_id.in_(chunk)
                )
            ):
                found[row.external_id] = row
        return found

    def _upsert(
        self,
        conn: Connection,
        connector_id: int,
        sync_id: int | None,
        kind: Kind,
        by_id: dict[str, Record],
        full_pass: str | None,
        now: datetime,
        outcome: PageOutcome,
    ) -> None:
        table = BUSINESS[kind.value]
        existing = self._existing(conn, table, connector_id, list(by_id))
        new_rows: list[dict[str, Any]] = []
        changed_rows: list[dict[str, Any]] = []
        seen_only: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        for ext_id, record in by_id.items():
            row = row_of(record)
            old = existing.get(ext_id)
            if old is None:
                new_rows.append(
                    {
                        **row,
                        "connector_id": connector_id,
                        "deleted": False,
                        "deleted_at": None,
                        "seen_pass": full_pass,
                        "sync_id": sync_id,
                    }
                )
                if full_pass is None:
                    log.append(
                        self._event(connector_id, sync_id, now, kind, ext_id, "created", None)
                    )
                continue
            diff = {
                key: [_jsonable(getattr(old, key)), _jsonable(value)]
                for key, value in row.items()
                if key != "external_id" and getattr(old, key) != value
            }
            restored = bool(old.deleted)
            pass_moved = full_pass is not None and old.seen_pass != full_pass
            if diff or restored:
                changed_rows.append(
                    {
                        **{f"v_{k}": v for k, v in row.items()},
                        "v_seen_pass": full_pass or old.seen_pass,
                        "v_sync_id": sync_id,
                        "k_connector_id": connector_id,
                        "k_external_id": ext_id,
                    }
                )
                # updated_at alone moving is not news for the paper trail
                material = {k: v for k, v in diff.items() if k != "updated_at"}
                if restored:
                    log.append(
                        self._event(connector_id, sync_id, now, kind, ext_id, "restored", material)
                    )
                elif material:
                    log.append(
                        self._event(connector_id, sync_id, now, kind, ext_id, "changed", material)
                    )
            elif pass_moved:
                seen_only.append(
                    {
                        "v_seen_pass": full_pass,
                        "k_connector_id": connector_id,
                        "k_external_id": ext_id,
                    }
                )
            else:
                outcome.unchanged += 1
        key = and_(
            table.c.connector_id == bindparam("k_connector_id"),
            table.c.external_id == bindparam("k_external_id"),
        )
        if new_rows:
            bulk_insert(conn, table, new_rows)
            outcome.created += len(new_rows)
            if full_pass is not None:
                # A full pass imports records by the thousand: one event per page says which,
                # rather than one per record (each row also carries the sync that wrote it).
                ids = [r["external_id"] for r in new_rows]
                log.append(
                    self._event(
                        connector_id,
                        sync_id,
                        now,
                        kind,
                        None,
                        "imported",
                        {"count": len(ids), "ids": ids},
                    )
                )
        if changed_rows:
            columns = [k for k in changed_rows[0] if k.startswith("v_")]
            conn.execute(
                update(table)
                .where(key)
                .values(
                    {c[2:]: bindparam(c) for c in columns} | {"deleted": False, "deleted_at": None}
                ),
                changed_rows,
            )
            outcome.changed += len(changed_rows)
        if seen_only:
            conn.execute(
                update(table).where(key).values(seen_pass=bindparam("v_seen_pass")), seen_only
            )
            outcome.unchanged += len(seen_only)
        if log:
            bulk_insert(conn, events, log)

    @staticmethod
    def _event(
        connector_id: int,
        sync_id: int | None,
        now: datetime,
        kind: Kind,
        ext_id: str | None,
        action: str,
        detail: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "connector_id": connector_id,
            "sync_id": sync_id,
            "at": now,
            "entity": kind.value,
            "external_id": ext_id,
            "action": action,
            "detail": detail,
        }

    def _delete(
        self,
        conn: Connection,
        connector_id: int,
        sync_id: int | None,
        kind: Kind,
        items: list[Deleted],
        now: datetime,
        outcome: PageOutcome,
        reason: str = "deleted on the platform",
    ) -> None:
        table = BUSINESS[kind.value]
        existing = self._existing(conn, table, connector_id, [d.id for d in items])
        live = [d for d in items if d.id in existing and not existing[d.id].deleted]
        if not live:
            return
        conn.execute(
            update(table)
            .where(
                table.c.connector_id == bindparam("k_connector_id"),
                table.c.external_id == bindparam("k_external_id"),
            )
            .values(deleted=True, deleted_at=bindparam("v_at"), sync_id=sync_id),
            [
                {"k_connector_id": connector_id, "k_external_id": d.id, "v_at": d.at or now}
                for d in live
            ],
        )
        conn.execute(
            insert(events),
            [
                self._event(
                    connector_id,
                    sync_id,
                    now,
                    kind,
                    d.id,
                    "deleted",
                    {"reason": "merged", "into": d.merged_into}
                    if d.merged_into
                    else {"reason": reason},
                )
                for d in live
            ],
        )
        outcome.deleted += len(live)

    def _sweep_unseen(
        self,
        conn: Connection,
        connector_id: int,
        sync_id: int | None,
        kind: Kind,
        full_pass: str,
        now: datetime,
        outcome: PageOutcome,
    ) -> None:
        table = BUSINESS[kind.value]
        unseen = conn.execute(
            select(table.c.external_id).where(
                table.c.connector_id == connector_id,
                table.c.deleted.is_(False),
                (table.c.seen_pass.is_(None)) | (table.c.seen_pass != full_pass),
            )
        ).scalars()
        items = [Deleted(kind, ext_id) for ext_id in unseen]
        if items:
            self._delete(
                conn,
                connector_id,
                sync_id,
                kind,
                items,
                now,
                outcome,
                reason="missing from a full sync",
            )

    # -- reading ------------------------------------------------------------------------------
    def counts(self, connector_id: int) -> RecordCounts:
        conn = self._conn
        found: dict[str, int] = {}
        for name, table in BUSINESS.items():
            found[name] = conn.execute(
                select(func.count()).where(
                    table.c.connector_id == connector_id, table.c.deleted.is_(False)
                )
            ).scalar_one()
        open_invoices = conn.execute(
            select(func.count()).where(
                invoices.c.connector_id == connector_id,
                invoices.c.deleted.is_(False),
                invoices.c.status == InvoiceStatus.OPEN.value,
            )
        ).scalar_one()
        quarantined = conn.execute(
            select(func.count()).where(
                quarantine.c.connector_id == connector_id, quarantine.c.resolved.is_(False)
            )
        ).scalar_one()
        return RecordCounts(
            customers=found["customer"],
            invoices=found["invoice"],
            open_invoices=open_invoices,
            payments=found["payment"],
            credits=found["credit"],
            quarantined=quarantined,
        )

    def open_invoice_ids(self, connector_id: int) -> set[str]:
        return set(
            self._conn.execute(
                select(invoices.c.external_id).where(
                    invoices.c.connector_id == connector_id,
                    invoices.c.status == InvoiceStatus.OPEN.value,
                    invoices.c.deleted.is_(False),
                )
            ).scalars()
        )

    def open_invoices(self, connector_id: int) -> list[Invoice]:
        """Every invoice the platform still says is owed (approved, balance above zero)."""
        rows = self._conn.execute(
            select(invoices).where(
                invoices.c.connector_id == connector_id,
                invoices.c.deleted.is_(False),
                invoices.c.status == InvoiceStatus.OPEN.value,
            )
        )
        return [invoice_of(row) for row in rows]

    def invoice_states(
        self, connector_id: int, ids: Iterable[str]
    ) -> dict[str, InvoiceStatus | None]:
        """What each named invoice is now (None: gone from the platform); unknown ids left out."""
        wanted = sorted(set(ids))
        found: dict[str, InvoiceStatus | None] = {}
        c = invoices.c
        for start in range(0, len(wanted), CHUNK):
            rows = self._conn.execute(
                select(c.external_id, c.status, c.deleted).where(
                    c.connector_id == connector_id, c.external_id.in_(wanted[start : start + CHUNK])
                )
            )
            for ext_id, status, deleted in rows:
                found[ext_id] = None if deleted else InvoiceStatus(status)
        return found

    def by_ids(self, connector_id: int, kind: Kind, ids: Iterable[str]) -> dict[str, Record]:
        """The named records of `kind` (gone from the platform or not), by platform id."""
        table = BUSINESS[kind.value]
        wanted = sorted(set(ids))
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), CHUNK):
            rows = self._conn.execute(
                select(table).where(
                    table.c.connector_id == connector_id,
                    table.c.external_id.in_(wanted[start : start + CHUNK]),
                )
            )
            for row in rows:
                found[row.external_id] = record_of(kind, row)
        return found

    def unapplied(self, connector_id: int) -> dict[tuple[str, str], Decimal]:
        """Per (customer, currency): payments not applied to an invoice and credits not used."""
        totals: dict[tuple[str, str], Decimal] = {}
        for table, column in ((payments, payments.c.unapplied), (credits, credits.c.remaining)):
            rows = self._conn.execute(
                select(table.c.customer_id, table.c.currency, func.sum(column))
                .where(
                    table.c.connector_id == connector_id,
                    table.c.deleted.is_(False),
                    table.c.status == DocStatus.ACTIVE.value,
                    table.c.customer_id.is_not(None),
                    column > Decimal(0),
                )
                .group_by(table.c.customer_id, table.c.currency)
            )
            for customer_id, currency, amount in rows:
                key = (customer_id, currency)
                totals[key] = totals.get(key, Decimal(0)) + Decimal(amount)
        return totals

    def named(self, connector_id: int, kind: Kind, ref: str) -> list[Record]:
        """Live invoices whose id or number is `ref`, or customers whose id or name is (any
        case): what a person names on the command line."""
        table = BUSINESS[kind.value]
        label = table.c.number if kind is Kind.INVOICE else table.c.name
        rows = self._conn.execute(
            select(table).where(
                table.c.connector_id == connector_id,
                table.c.deleted.is_(False),
                # the database's lower() on both sides: SQLite's folds ASCII letters only
                (table.c.external_id == ref) | (func.lower(label) == func.lower(ref)),
            )
        )
        return [record_of(kind, row) for row in rows]

    def live(self, connector_id: int, kind: Kind) -> dict[str, Record]:
        """Every record of `kind` not gone from the platform, by its platform id."""
        table = BUSINESS[kind.value]
        rows = self._conn.execute(
            select(table).where(table.c.connector_id == connector_id, table.c.deleted.is_(False))
        )
        return {row.external_id: record_of(kind, row) for row in rows}

    def deleted_ids(self, connector_id: int, kind: Kind) -> set[str]:
        table = BUSINESS[kind.value]
        return set(
            self._conn.execute(
                select(table.c.external_id).where(
                    table.c.connector_id == connector_id, table.c.deleted.is_(True)
                )
            ).scalars()
        )


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows; on SQLite straight through the driver, skipping per-row overhead.

    SQLAlchemy's per-row parameter processing costs several times what SQLite itself spends on
    an insert; the initial sync of a large company inserts hundreds of thousands of rows. The
    SQLite path converts values to exactly what SQLAlchemy's own types store (the store's tests
    read them back through SQLAlchemy on both databases), and PostgreSQL takes the normal path.
    """
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    columns = [c for c in table.columns if c.key in rows[0]]
    convert = [_sqlite_converter(c.type) for c in columns]
    names = ", ".join(f'"{c.name}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    pairs = list(zip([c.key for c in columns], convert, strict=True))
    conn.exec_driver_sql(
        f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})',
        [_convert_row(row, pairs) for row in rows],
    )


def _convert_row(
    row: dict[str, Any], pairs: list[tuple[str, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    out = []
    for key, convert in pairs:
        value = row[key]
        out.append(None if value is None else convert(value))
    return tuple(out)


def _sqlite_converter(kind: Any) -> Callable[[Any], Any]:
    if isinstance(kind, Amount):
        return to_units
    if isinstance(kind, UtcDateTime):
        return _sqlite_datetime
    if isinstance(kind, Date):
        return date.isoformat
    if isinstance(kind, Boolean):
        return int
    if isinstance(kind, JSON):
        return dumps
    return _same_value


def _sqlite_datetime(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format, in UTC without an offset (see UtcDateTime)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _same_value(value: Any) -> Any:
    return value
