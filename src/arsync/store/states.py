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


class OutboxState(StrEnum):
    """Where an action stands in the outbox (writeback/outbox.py draws the machine)."""

    PLANNED = "planned"  # enqueued before its moment: becomes ready when it comes
    AWAITING_APPROVAL = "awaiting_approval"  # a person approves (ready) or rejects (skipped)
    READY = "ready"  # may be claimed now (or from `next_at`)
    CLAIMED = "claimed"  # one worker holds it under a lease (owner, expiry)
    DONE = "done"  # its effect is in the platform (or arsync's own list), with the evidence
    SKIPPED = "skipped"  # not done, on purpose, with the reason (paid, rejected, superseded...)
    RETRYING = "retrying"  # failed for a passing reason; tried again from `next_at`
    UNKNOWN = "unknown"  # a write whose reply was lost: settled by reading the platform back
    NEEDS_PERSON = "needs_person"  # read-back cannot tell: a person says whether it happened
    DEAD = "dead"  # refused for good, or out of attempts: shown, never retried by itself


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
    "OutboxState",
    "PlanState",
    "RunOutcome",
    "check",
]
