"""The firm's daily digests: one row per firm time zone and local day, claimed before sending.

A digest is claimed by inserting its row ("sending") in a transaction of its own, committed
before the message leaves: the insert is `ON CONFLICT DO NOTHING` on the (zone, day) key, so of
two processes (a restart, a second replica) exactly one gets the row and the other sends
nothing. Its outcome is recorded afterwards by the claimer only (`settle`). Only a try that
certainly sent nothing ("failed") may be claimed again, from its `next_at`; a row left
"sending" by a process that died, or "unknown" after a lost reply, is never taken over.

Also here: the outbox rows that ended in a window of time (what the digest says was done
yesterday), a query the outbox's own repository has no use for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from arsync.store.outbox import OutboxRow
from arsync.store.outbox import _row as outbox_row
from arsync.store.schema import digests, outbox
from arsync.store.states import OutboxState

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_d = digests.c
_o = outbox.c


class DigestState(StrEnum):
    """Where one day's digest stands (the table CHECKs these values)."""

    SENDING = "sending"  # claimed and committed; the message may be on its way (or never left)
    SENT = "sent"  # the mail server accepted it
    FAILED = "failed"  # certainly not sent (refused, unreachable, not composed): may go later
    UNKNOWN = "unknown"  # handed over, but the server's answer was lost: never sent again


@dataclass(frozen=True, slots=True)
class DigestRow:
    zone: str
    day: date
    state: DigestState
    owner: str
    claimed_at: datetime
    attempts: int
    next_at: datetime | None
    sent_at: datetime | None
    recipient: str
    subject: str | None
    message_id: str | None
    error: str | None
    summary: Any
    updated_at: datetime


def _row(r: Any) -> DigestRow:
    return DigestRow(
        zone=r.zone,
        day=r.day,
        state=DigestState(r.state),
        owner=r.owner,
        claimed_at=r.claimed_at,
        attempts=r.attempts,
        next_at=r.next_at,
        sent_at=r.sent_at,
        recipient=r.recipient,
        subject=r.subject,
        message_id=r.message_id,
        error=r.error,
        summary=r.summary,
        updated_at=r.updated_at,
    )


class DigestsRepo:
    """`DigestsRepo(tx)`: the digests table, within the caller's transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    # -- reading ----------------------------------------------------------------------------------
    def get(self, zone: str, day: date) -> DigestRow | None:
        found = self._conn.execute(
            select(digests).where(_d.zone == zone, _d.day == day)
        ).one_or_none()
        return _row(found) if found is not None else None

    def of_zone(self, zone: str, *, since: date, before: date) -> list[DigestRow]:
        """The zone's digests of the days from `since` up to (not including) `before`."""
        rows = self._conn.execute(
            select(digests)
            .where(_d.zone == zone, _d.day >= since, _d.day < before)
            .order_by(_d.day)
        )
        return [_row(r) for r in rows]

    def ended_between(
        self,
        connector_id: int,
        start: datetime,
        end: datetime,
        *,
        states: Sequence[OutboxState] = (OutboxState.DONE,),
    ) -> list[OutboxRow]:
        """Outbox rows of a connector that reached one of `states` (final ones) at or after
        `start` and before `end`, in the order they ended."""
        rows = self._conn.execute(
            select(outbox)
            .where(
                _o.connector_id == connector_id,
                _o.state.in_([s.value for s in states]),
                _o.done_at >= start,
                _o.done_at < end,
            )
            .order_by(_o.done_at, _o.id)
        )
        return [outbox_row(r) for r in rows]

    # -- writing ----------------------------------------------------------------------------------
    def claim(self, zone: str, day: date, *, owner: str, recipient: str) -> DigestRow | None:
        """The day's digest for `owner` to send, or None when another has it (or had it).

        A new day's row is inserted; an existing one is taken only if its last try failed and
        its `next_at` has come. Commit before sending: the commit is the claim."""
        now = self._tx.now
        values = {
            "zone": zone,
            "day": day,
            "state": DigestState.SENDING.value,
            "owner": owner,
            "claimed_at": now,
            "attempts": 1,
            "recipient": recipient,
            "updated_at": now,
        }
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        # RETURNING says whether the row went in (psycopg gives no rowcount for this insert)
        inserted = self._conn.execute(
            dialect.insert(digests)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["zone", "day"])
            .returning(_d.zone)
        ).first()
        if inserted is None:
            # the row is there: only a failed try whose time has come is taken again (on
            # PostgreSQL the conditional UPDATE waits for, then re-reads, a row another
            # transaction is changing, so two takers cannot both match)
            taken = self._conn.execute(
                update(digests)
                .where(
                    _d.zone == zone,
                    _d.day == day,
                    _d.state == DigestState.FAILED.value,
                    or_(_d.next_at.is_(None), _d.next_at <= now),
                )
                .values(
                    state=DigestState.SENDING.value,
                    owner=owner,
                    claimed_at=now,
                    attempts=_d.attempts + 1,
                    next_at=None,
                    recipient=recipient,
                    updated_at=now,
                )
            ).rowcount
            if taken != 1:
                return None
        return self.get(zone, day)

    def settle(
        self,
        zone: str,
        day: date,
        *,
        owner: str,
        state: DigestState,
        subject: str | None = None,
        message_id: str | None = None,
        error: str | None = None,
        next_at: datetime | None = None,
        summary: Any = None,
    ) -> bool:
        """Record how the try `owner` claimed ended; False if the row is no longer its own."""
        if state is DigestState.SENDING:
            raise ValueError("settle() records an outcome, not a claim")
        now = self._tx.now
        values: dict[str, Any] = {
            "state": state.value,
            "error": error,
            "next_at": next_at if state is DigestState.FAILED else None,
            "updated_at": now,
        }
        if state is DigestState.SENT:
            values["sent_at"] = now
        for name, value in (("subject", subject), ("message_id", message_id)):
            if value is not None:
                values[name] = value
        if summary is not None:
            values["summary"] = summary
        moved = self._conn.execute(
            update(digests)
            .where(
                _d.zone == zone,
                _d.day == day,
                _d.state == DigestState.SENDING.value,
                _d.owner == owner,
            )
            .values(**values)
        ).rowcount
        return bool(moved == 1)


__all__ = ["DigestRow", "DigestState", "DigestsRepo"]
