"""The outbox's rows: enqueue under the action's id, claim under a lease, move between states.

Every change of state is one conditional UPDATE (`WHERE state IN (...)`), so two processes can
never both move the same action, and each change is written to the paper trail (events) in the
same transaction. A claim takes ready rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on
SQLite every write transaction begins IMMEDIATE, so the claim runs alone under the write lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, update

from arsync.store.schema import channel_parks, outbox
from arsync.store.states import Entity, OutboxState

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_o = outbox.c
S = OutboxState

#: states an action never leaves by itself
FINAL = frozenset({S.DONE, S.SKIPPED, S.DEAD})
#: states in which an action still has to happen (or be settled)
PENDING = frozenset(
    {S.PLANNED, S.AWAITING_APPROVAL, S.READY, S.CLAIMED, S.RETRYING, S.UNKNOWN, S.NEEDS_PERSON}
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    connector_id: int
    id: str
    key: str
    kind: str
    subject: str
    customer_id: str
    invoice_id: str | None
    stage: str
    stage_title: str
    tone: str
    amount: Decimal
    currency: str
    due_date: date | None
    at: datetime
    state: OutboxState
    approval: str | None
    decided_by: str | None
    decided_at: datetime | None
    attempts: int
    next_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    sent_at: datetime | None
    reason: str | None
    reason_code: str | None
    result: Any
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        connector_id=r.connector_id,
        id=r.id,
        key=r.key,
        kind=r.kind,
        subject=r.subject,
        customer_id=r.customer_id,
        invoice_id=r.invoice_id,
        stage=r.stage,
        stage_title=r.stage_title,
        tone=r.tone,
        amount=r.amount,
        currency=r.currency,
        due_date=r.due_date,
        at=r.at,
        state=OutboxState(r.state),
        approval=r.approval,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        attempts=r.attempts,
        next_at=r.next_at,
        lease_owner=r.lease_owner,
        lease_until=r.lease_until,
        sent_at=r.sent_at,
        reason=r.reason,
        reason_code=r.reason_code,
        result=r.result,
        created_at=r.created_at,
        updated_at=r.updated_at,
        done_at=r.done_at,
    )


class OutboxRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    # -- reading ----------------------------------------------------------------------------------
    def get(self, connector_id: int, action_id: str) -> OutboxRow | None:
        found = self._conn.execute(
            select(outbox).where(_o.connector_id == connector_id, _o.id == action_id)
        ).one_or_none()
        return _row(found) if found is not None else None

    def find(self, prefix: str) -> list[OutboxRow]:
        """Actions of any connector whose id starts with `prefix` (a person types a few)."""
        rows = self._conn.execute(
            select(outbox).where(_o.id.startswith(prefix.lower(), autoescape=True)).limit(20)
        )
        return [_row(r) for r in rows]

    def existing(self, connector_id: int, ids: Iterable[str]) -> dict[str, OutboxRow]:
        wanted = list(dict.fromkeys(ids))
        out: dict[str, OutboxRow] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for r in self._conn.execute(
                select(outbox).where(_o.connector_id == connector_id, _o.id.in_(chunk))
            ):
                out[r.id] = _row(r)
        return out

    def of(
        self,
        connector_id: int,
        *,
        states: Iterable[OutboxState] = (),
        subject: str | None = None,
        subjects: Sequence[str] = (),
        customer_id: str | None = None,
        invoice_id: str | None = None,
        kinds: Sequence[str] = (),
    ) -> list[OutboxRow]:
        query = select(outbox).where(_o.connector_id == connector_id)
        wanted = [s.value for s in states]
        if wanted:
            query = query.where(_o.state.in_(wanted))
        if subject is not None:
            query = query.where(_o.subject == subject)
        if subjects:
            query = query.where(_o.subject.in_(list(subjects)))
        if customer_id is not None:
            query = query.where(_o.customer_id == customer_id)
        if invoice_id is not None:
            query = query.where(_o.invoice_id == invoice_id)
        if kinds:
            query = query.where(_o.kind.in_(list(kinds)))
        return [_row(r) for r in self._conn.execute(query.order_by(_o.at, _o.id))]

    def counts(self, connector_id: int) -> dict[OutboxState, int]:
        rows = self._conn.execute(
            select(_o.state, func.count()).where(_o.connector_id == connector_id).group_by(_o.state)
        )
        return {OutboxState(state): n for state, n in rows}

    def tally(
        self, starts: Sequence[datetime]
    ) -> dict[int, dict[OutboxState, tuple[int, tuple[int, ...]]]]:
        """Every connector's actions by state, in one pass over the outbox: {connector id:
        {state: (how many, (how many reached that state from `starts[k]` on, for each k))}}.

        An action in a final state reached it when it was done (`done_at`); any other, at its
        last move (`updated_at`). A few `starts` (one firm's midnight per time zone) cost a
        column each, not a query each."""
        final = [s.value for s in FINAL]
        reached = case((_o.state.in_(final), _o.done_at), else_=_o.updated_at)
        since = [func.sum(case((reached >= start, 1), else_=0)) for start in starts]
        rows = self._conn.execute(
            select(_o.connector_id, _o.state, func.count(), *since).group_by(
                _o.connector_id, _o.state
            )
        )
        out: dict[int, dict[OutboxState, tuple[int, tuple[int, ...]]]] = {}
        for cid, state, n, *recent in rows:
            out.setdefault(cid, {})[OutboxState(state)] = (n, tuple(int(r or 0) for r in recent))
        return out

    def due_count(self, connector_id: int, now: datetime) -> int:
        """Actions that could be claimed now."""
        return int(
            self._conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(_o.connector_id == connector_id, *self._claimable(now))
            ).scalar_one()
        )

    # -- writing ----------------------------------------------------------------------------------
    def add(
        self,
        connector_id: int,
        *,
        id: str,
        key: str,
        kind: str,
        subject: str,
        customer_id: str,
        invoice_id: str | None,
        stage: str,
        stage_title: str,
        tone: str,
        amount: Decimal,
        currency: str,
        due_date: date | None,
        at: datetime,
        state: OutboxState,
        approval: str | None = None,
        detail: dict[str, Any] | None = None,
        reason: str | None = None,
        result: Any = None,
    ) -> bool:
        """Insert the action unless its id is there already (then nothing changes): False."""
        if self.get(connector_id, id) is not None:
            return False
        now = self._tx.now
        self._conn.execute(
            insert(outbox).values(
                connector_id=connector_id,
                id=id,
                key=key,
                kind=kind,
                subject=subject,
                customer_id=customer_id,
                invoice_id=invoice_id,
                stage=stage,
                stage_title=stage_title,
                tone=tone,
                amount=amount,
                currency=currency,
                due_date=due_date,
                at=at,
                state=state.value,
                approval=approval,
                reason=reason,
                result=result,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
        self._trail(
            connector_id,
            customer_id,
            invoice_id,
            "action_enqueued",
            {
                "action": id,
                "kind": kind,
                "stage": stage,
                "state": state.value,
                **({"approval": approval} if approval else {}),
                **(detail or {}),
            },
        )
        return True

    def move(
        self,
        row: OutboxRow,
        to: OutboxState,
        *,
        expect: Iterable[OutboxState] | None = None,
        event: str | None = None,
        detail: dict[str, Any] | None = None,
        owner: str | None = None,
        **fields: Any,
    ) -> bool:
        """Move one action to `to` if it is still in one of `expect` (default: the state it was
        read in), setting `fields`; say so in the trail. False when another process moved it.

        `owner`: a claimed action moves only while `owner` holds its lease, so a worker whose
        lease lapsed (and whose action another worker took over) can no longer move it."""
        states = [s.value for s in (expect if expect is not None else (row.state,))]
        held = (
            (_o.lease_owner == owner) | (_o.state != S.CLAIMED.value)
            if owner is not None
            else _o.state == _o.state
        )
        now = self._tx.now
        values: dict[str, Any] = {"state": to.value, "updated_at": now, **fields}
        if to in FINAL and "done_at" not in fields:
            values["done_at"] = now
        if to is not S.CLAIMED and "lease_owner" not in fields:
            values["lease_owner"] = None
            values["lease_until"] = None
        moved = self._conn.execute(
            update(outbox)
            .where(_o.connector_id == row.connector_id, _o.id == row.id, _o.state.in_(states), held)
            .values(**values)
        ).rowcount
        if moved != 1:
            return False
        said: dict[str, Any] = {"action": row.id, "kind": row.kind, "stage": row.stage}
        for name in ("reason", "reason_code", "attempts", "decided_by"):
            if fields.get(name) is not None:
                said[name] = fields[name]
        if fields.get("next_at") is not None:
            said["next_at"] = fields["next_at"].isoformat()
        self._trail(
            row.connector_id,
            row.customer_id,
            row.invoice_id,
            event or f"action_{to.value}",
            {**said, **(detail or {})},
        )
        return True

    def claim(
        self,
        connector_id: int,
        *,
        owner: str,
        lease: timedelta,
        limit: int,
        kinds: Sequence[str] = (),
        exclude_kinds: Sequence[str] = (),
    ) -> list[OutboxRow]:
        """Claim up to `limit` actions that may happen now, oldest first, under a lease."""
        now = self._tx.now
        query = select(outbox).where(_o.connector_id == connector_id, *self._claimable(now))
        if kinds:
            query = query.where(_o.kind.in_(list(kinds)))
        if exclude_kinds:
            query = query.where(_o.kind.not_in(list(exclude_kinds)))
        query = query.order_by(_o.at, _o.id).limit(limit)
        if self._conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = [_row(r) for r in self._conn.execute(query)]
        claimed: list[OutboxRow] = []
        until = now + lease
        for row in found:
            moved = self._conn.execute(
                update(outbox)
                .where(
                    _o.connector_id == connector_id,
                    _o.id == row.id,
                    _o.state.in_([S.READY.value, S.RETRYING.value]),
                )
                .values(
                    state=S.CLAIMED.value,
                    lease_owner=owner,
                    lease_until=until,
                    attempts=row.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
            if moved == 1:
                claimed.append(
                    _replace(
                        row,
                        state=S.CLAIMED,
                        lease_owner=owner,
                        lease_until=until,
                        attempts=row.attempts + 1,
                    )
                )
                self._trail(
                    connector_id,
                    row.customer_id,
                    row.invoice_id,
                    "action_claimed",
                    {
                        "action": row.id,
                        "kind": row.kind,
                        "stage": row.stage,
                        "owner": owner,
                        "attempt": row.attempts + 1,
                    },
                )
        return claimed

    def lapsed(self, connector_id: int) -> list[OutboxRow]:
        """Claims whose lease ran out: their worker died or hung."""
        now = self._tx.now
        rows = self._conn.execute(
            select(outbox).where(
                _o.connector_id == connector_id,
                _o.state == S.CLAIMED.value,
                _o.lease_until < now,
            )
        )
        return [_row(r) for r in rows]

    def expire_others(self, connector_id: int, owner: str) -> int:
        """End now the claims of every worker but `owner` (a replica that took the connector
        over knows their holder lost it: dead, or cut off from the store and so unable to
        send anything more), so the next pass settles them at once instead of a lease later,
        while a lost email's key is still remembered by the platform."""
        now = self._tx.now
        ended = self._conn.execute(
            update(outbox)
            .where(
                _o.connector_id == connector_id,
                _o.state == S.CLAIMED.value,
                _o.lease_owner != owner,
                _o.lease_until >= now,
            )
            .values(lease_until=now - timedelta(microseconds=1))
        )
        return int(ended.rowcount or 0)

    def release_owner(self, connector_id: int, owner: str) -> list[OutboxRow]:
        """This worker's own claims (e.g. left by a stop): read them to settle them."""
        rows = self._conn.execute(
            select(outbox).where(
                _o.connector_id == connector_id,
                _o.state == S.CLAIMED.value,
                _o.lease_owner == owner,
            )
        )
        return [_row(r) for r in rows]

    def promote(self, connector_id: int) -> int:
        """Planned actions whose moment came are ready."""
        now = self._tx.now
        rows = self._conn.execute(
            select(outbox).where(
                _o.connector_id == connector_id, _o.state == S.PLANNED.value, _o.at <= now
            )
        ).all()
        for r in rows:
            self.move(_row(r), S.READY, event="action_ready")
        return len(rows)

    # -- channels parked for a while ---------------------------------------------------------
    def park(self, connector_id: int, channel: str, until: datetime, reason: str) -> None:
        where = (channel_parks.c.connector_id == connector_id, channel_parks.c.channel == channel)
        self._conn.execute(delete(channel_parks).where(*where))
        self._conn.execute(
            insert(channel_parks).values(
                connector_id=connector_id,
                channel=channel,
                until=until,
                reason=reason,
                set_at=self._tx.now,
            )
        )
        self._tx.events.append(
            connector_id,
            Entity.CONNECTOR,
            "channel_parked",
            detail={"channel": channel, "until": until.isoformat(), "reason": reason},
        )

    def parked(self, connector_id: int) -> dict[str, tuple[datetime, str]]:
        """Channels closed now: {channel: (until, reason)}."""
        now = self._tx.now
        rows = self._conn.execute(
            select(channel_parks).where(
                channel_parks.c.connector_id == connector_id, channel_parks.c.until > now
            )
        )
        return {r.channel: (r.until, r.reason) for r in rows}

    def parked_by_connector(self, now: datetime) -> dict[int, dict[str, tuple[datetime, str]]]:
        """Every connector's channels closed at `now`: {connector id: {channel: (until, why)}}."""
        out: dict[int, dict[str, tuple[datetime, str]]] = {}
        rows = self._conn.execute(select(channel_parks).where(channel_parks.c.until > now))
        for r in rows:
            out.setdefault(r.connector_id, {})[r.channel] = (r.until, r.reason)
        return out

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _claimable(now: datetime) -> tuple[Any, ...]:
        return (
            or_(
                _o.state == S.READY.value,
                _o.state == S.RETRYING.value,
            ),
            or_(_o.next_at.is_(None), _o.next_at <= now),
            and_(_o.at <= now),
        )

    def _trail(
        self,
        connector_id: int,
        customer_id: str,
        invoice_id: str | None,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        if invoice_id is not None:
            self._tx.events.append(
                connector_id,
                Entity.INVOICE,
                action,
                external_id=invoice_id,
                detail={"customer": customer_id, **detail},
            )
        else:
            self._tx.events.append(
                connector_id, Entity.CUSTOMER, action, external_id=customer_id, detail=detail
            )


def _replace(row: OutboxRow, **changes: Any) -> OutboxRow:
    from dataclasses import replace

    return replace(row, **changes)


__all__ = ["FINAL", "PENDING", "OutboxRepo", "OutboxRow"]
