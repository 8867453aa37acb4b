"""The store's states as StrEnums; each state column carries a CHECK built from its enum."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint

from arsync.domain import HoldKind, HoldSource, HoldState, PlanState


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
