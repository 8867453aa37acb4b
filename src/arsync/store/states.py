"""The store's states as StrEnums; each state column carries a CHECK built from its enum."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint


class ConnectorState(StrEnum):
    NEW = "new"  # configured, never connected
    CONNECTED = "connected"
    RECONNECT_NEEDED = "reconnect_needed"  # the grant is dead: a person runs `arsync connect`


class RunOutcome(StrEnum):
    RUNNING = "running"  # still going; a run found so by the next one was killed
    OK = "ok"  # its last page committed
    FAILED = "failed"
    PARKED = "parked"  # stopped for the platform's limits; resumes after parked_until
    KILLED = "killed"  # found running when the next run began: the process died


class Entity(StrEnum):
    """What an event in the paper trail is about."""

    CUSTOMER = "customer"
    INVOICE = "invoice"
    PAYMENT = "payment"
    CREDIT = "credit"
    CONNECTOR = "connector"


class HoldKind(StrEnum):
    PAUSE = "pause"  # a customer: no contact until a date or until resumed
    EXCLUDE = "exclude"  # an invoice: never chased
    DISPUTE = "dispute"  # an invoice in dispute: never chased until resolved
    PROMISE = "promise"  # a promise to pay by a date: quiet until the date plus grace
    SETTLEMENT = "settlement"  # an agreed lower amount: paid, the chase ends


class HoldState(StrEnum):
    ACTIVE = "active"
    CLEARED = "cleared"  # resumed, resolved or withdrawn by a person (or the ledger)
    BROKEN = "broken"  # a promise not kept
    KEPT = "kept"  # a promise or settlement paid


class HoldSource(StrEnum):
    """Who set a hold: a person through arsync, or the bookkeeper inside the ledger."""

    ARSYNC = "arsync"
    LEDGER = "ledger"


class PlanState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"  # every instalment paid
    ENDED = "ended"  # too many instalments missed, or ended by a person


def check(column: str, states: type[StrEnum], name: str) -> CheckConstraint:
    """CHECK (column IN (...every value of `states`...))."""
    values = ", ".join(f"'{s.value}'" for s in states)
    return CheckConstraint(f"{column} IN ({values})", name=name)


__all__ = [
    "ConnectorState",
    "Entity",
    "HoldKind",
    "HoldSource",
    "HoldState",
    "PlanState",
    "RunOutcome",
    "check",
]
