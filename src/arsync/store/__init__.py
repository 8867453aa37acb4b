"""The local state store: SQLAlchemy 2 tables, Alembic migrations, SQLite or PostgreSQL.

The only part of arsync that speaks SQL. `open_store(url, clock)` opens (and migrates) it;
`with store.transaction() as tx:` writes through one repository per aggregate, all committed
together; `with store.reading() as tx:` reads. See `unit.py`.
"""

from __future__ import annotations

from arsync.clock import Clock
from arsync.errors import Busy
from arsync.store.engine import open_engine, probe
from arsync.store.models import (
    ConnectorRow,
    Event,
    Hold,
    Instalment,
    PaymentPlan,
    RecordCounts,
    StoredTokens,
    SyncRun,
)
from arsync.store.records import PageOutcome
from arsync.store.states import (
    ConnectorState,
    Entity,
    HoldKind,
    HoldSource,
    HoldState,
    PlanState,
    RunOutcome,
)
from arsync.store.unit import Store, Tx


def open_store(url: str, clock: Clock) -> Store:
    """The store at `url`, migrated to this arsync's schema, stamping times from `clock`."""
    return Store(open_engine(url), clock)


__all__ = [
    "Busy",
    "ConnectorRow",
    "ConnectorState",
    "Entity",
    "Event",
    "Hold",
    "HoldKind",
    "HoldSource",
    "HoldState",
    "Instalment",
    "PageOutcome",
    "PaymentPlan",
    "PlanState",
    "RecordCounts",
    "RunOutcome",
    "Store",
    "StoredTokens",
    "SyncRun",
    "Tx",
    "open_store",
    "probe",
]
