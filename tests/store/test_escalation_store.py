"""What the escalation engine reads and writes in the store, on SQLite and PostgreSQL: the
ledger's labels, Expected Dates, unapplied money, per-customer settings, and the holds a
bookkeeper sets inside the ledger, recorded once and ended when they go."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from arsync.clock import FrozenClock
from arsync.domain import (
    CompanyInfo,
    Credit,
    Customer,
    DocStatus,
    HoldKind,
    HoldSource,
    HoldState,
    InvoiceStatus,
    Kind,
    Page,
    Payment,
)
from arsync.escalation.planner import Change, Status, plan
from arsync.escalation.policy import builtin_policies
from arsync.escalation.reading import STAGE_DONE, firm_zone, snapshot
from arsync.escalation.record import PLANNER, reconcile_ledger, settle
from arsync.store import Entity, Store, open_store
from arsync.store.models import ConnectorRow
from tests.support import invoice

T = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
POLICY = builtin_policies()["standard"]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


def customer(ext: str, **changes: object) -> Customer:
    made = Customer(ext, f"Customer {ext}", f"{ext}@example.com", None, "GBP", True, T)
    return replace(made, **changes)  # type: ignore[arg-type]


def linked(store: Store, platform: str = "xero") -> ConnectorRow:
    with store.transaction() as tx:
        row, _ = tx.connectors.link(
            "acme",
            platform,
            "tenant-1",
            CompanyInfo("Acme Ltd", "GBP", "GB", None, "GMTSTANDARDTIME"),
            at=tx.now,
        )
        return row


def apply(store: Store, row: ConnectorRow, *items: object, **page: object) -> None:
    with store.transaction() as tx:
        tx.records.apply_page(row.id, None, Page("test", list(items), {"n": 1}, **page))  # type: ignore[arg-type]


def fresh(store: Store) -> ConnectorRow:
    with store.reading() as tx:
        row = tx.connectors.by_name("acme")
    assert row is not None
    return row


def test_customers_keep_their_labels_notes_and_country_and_a_tags_page_replaces_all(
    store: Store,
) -> None:
    row = linked(store)
    apply(
        store,
        row,
        customer("c1", tags=("VIP", "Do not chase"), notes="call after 3pm", country="IE"),
        customer("c2"),
    )
    with store.reading() as tx:
        live = tx.records.live(row.id, Kind.CUSTOMER)
    c1 = live["c1"]
    assert isinstance(c1, Customer)
    assert c1.tags == ("Do not chase", "VIP") and c1.notes == "call after 3pm"
    assert c1.country == "IE"
    # the groups read in one go: c2 joins one, c1 leaves both
    apply(store, row, tags={"c2": ("Do not chase",)})
    with store.reading() as tx:
        live = tx.records.live(row.id, Kind.CUSTOMER)
        trail = tx.events.of(row.id, entity=Entity.CUSTOMER, actions=("changed",))
    assert [live[c].tags for c in ("c1", "c2")] == [(), ("Do not chase",)]  # type: ignore[union-attr]
    assert {e.external_id for e in trail} == {"c1", "c2"}
    # the same labels again change nothing
    apply(store, row, tags={"c2": ("Do not chase",)})
    with store.reading() as tx:
        again = tx.events.of(row.id, entity=Entity.CUSTOMER, actions=("changed",))
    assert len(again) == len(trail)


def test_unapplied_money_and_the_state_of_named_invoices(store: Store) -> None:
    row = linked(store)
    pay = Payment("p1", "c1", date(2026, 11, 1), "GBP", Decimal("300.00"), Decimal("120.50"),
                  DocStatus.ACTIVE, (), T)  # fmt: skip
    void = replace(pay, id="p2", status=DocStatus.VOIDED)
    credit = Credit("cn1", "CN-1", "c1", date(2026, 11, 2), "GBP", Decimal("50.00"),
                    Decimal("20.00"), DocStatus.ACTIVE, (), T)  # fmt: skip
    euro = replace(credit, id="cn2", currency="EUR", remaining=Decimal("5.00"))
    apply(store, row, pay, void, credit, euro, invoice("1"), invoice("2", "0"))
    with store.reading() as tx:
        assert tx.records.unapplied(row.id) == {
            ("c1", "GBP"): Decimal("140.50"),
            ("c1", "EUR"): Decimal("5.00"),
        }
        states = tx.records.invoice_states(row.id, ["1", "2", "nope"])
    assert states == {"1": InvoiceStatus.OPEN, "2": InvoiceStatus.PAID}


def test_a_customer_setting_is_set_changed_and_cleared_with_its_trail(store: Store) -> None:
    row = linked(store)
    with store.transaction() as tx:
        tx.settings.put(row.id, "c1", "timezone", "America/Denver", set_by="sam")
        tx.settings.put(row.id, "c1", "timezone", "America/Denver", set_by="sam")  # no change
        tx.settings.put(row.id, "c1", "timezone", "Europe/Dublin", set_by="kim")
    with store.reading() as tx:
        (setting,) = tx.settings.of(row.id)
        assert (setting.value, setting.set_by) == ("Europe/Dublin", "kim")
    with store.transaction() as tx:
        tx.settings.put(row.id, "c1", "timezone", None, set_by="kim")
    with store.reading() as tx:
        assert tx.settings.of(row.id) == []
        trail = tx.events.of(row.id, actions=("setting_changed",))
    assert [(e.detail["from"], e.detail["to"]) for e in trail] == [
        (None, "America/Denver"),
        ("America/Denver", "Europe/Dublin"),
        ("Europe/Dublin", None),
    ]


def test_ledger_holds_are_recorded_once_and_end_when_the_ledger_drops_them(
    store: Store, clock: FrozenClock
) -> None:
    row = linked(store)
    due = date(2026, 11, 1)
    apply(
        store,
        row,
        customer("c1", tags=("do NOT chase",)),
        customer("c2", notes="Owner says: #NoChase until spring"),
        customer("c3"),
        invoice("1", customer_id="c3", due_date=due, expected_date=date(2026, 11, 30)),
    )
    with store.transaction() as tx:
        assert reconcile_ledger(tx, fresh(store), POLICY) == 3
    with store.transaction() as tx:
        assert reconcile_ledger(tx, fresh(store), POLICY) == 0  # nothing new
        active = tx.holds.active(row.id)
    assert {(h.kind, h.customer_id, h.invoice_id, h.until) for h in active} == {
        (HoldKind.PAUSE, "c1", None, None),
        (HoldKind.PAUSE, "c2", None, None),
        (HoldKind.PROMISE, "c3", "1", date(2026, 11, 30)),
    }
    assert all(h.source is HoldSource.LEDGER for h in active)
    assert {h.reason for h in active} >= {'contact group "do NOT chase"', 'Notes say "#nochase"'}
    # the bookkeeper removes the group and moves the Expected Date
    apply(
        store,
        row,
        customer("c1"),
        invoice("1", customer_id="c3", due_date=due, expected_date=date(2026, 12, 4)),
    )
    with store.transaction() as tx:
        assert reconcile_ledger(tx, fresh(store), POLICY) == 3  # one pause ended, promise moved
        active = tx.holds.active(row.id)
        ended = tx.holds.history(row.id, customer_id="c1")
    assert {(h.kind, h.customer_id, h.until) for h in active} == {
        (HoldKind.PAUSE, "c2", None),
        (HoldKind.PROMISE, "c3", date(2026, 12, 4)),
    }
    assert [(h.state, h.ended_by) for h in ended] == [(HoldState.CLEARED, PLANNER)]


def test_a_ledger_promise_broken_is_recorded_once_and_not_made_again(
    store: Store, clock: FrozenClock
) -> None:
    row = linked(store)
    apply(
        store,
        row,
        customer("c3"),
        invoice(
            "1",
            "100.00",
            customer_id="c3",
            due_date=date(2026, 10, 1),
            expected_date=date(2026, 11, 24),
        ),
    )
    firm = firm_zone(fresh(store), None, "connectors/acme.toml", "Xero")
    with store.transaction() as tx:
        settle(tx, fresh(store), POLICY, firm, tx.now)
    clock.advance(timedelta(days=5).total_seconds())  # 28 Nov: past 24 Nov + 3 days' grace
    with store.transaction() as tx:
        row_now = fresh(store)
        settle(tx, row_now, POLICY, firm, tx.now)
        settle(tx, row_now, POLICY, firm, tx.now)  # twice: nothing more
        holds = tx.holds.history(row.id, invoice_id="1")
        result = plan(snapshot(tx, row_now, POLICY, firm, tx.now), POLICY, tx.now)
    assert [(h.kind, h.state) for h in holds] == [(HoldKind.PROMISE, HoldState.BROKEN)]
    decision = result.of("invoice:1")
    assert decision is not None and decision.status is Status.WAITING  # Saturday 28 Nov
    assert "promise to pay was broken" in decision.reason
    assert {a.tone.value for a in decision.actions} == {"firm"}  # 30-day polite → firmer
    assert not [t for t in result.transitions if t.change is Change.PROMISE_BROKEN]


def test_the_snapshot_reads_stages_done_from_the_trail(store: Store) -> None:
    row = linked(store)
    apply(store, row, customer("c1"), invoice("1", due_date=date(2026, 10, 1)))
    firm = firm_zone(fresh(store), None, "connectors/acme.toml", "Xero")
    with store.transaction() as tx:
        tx.events.append(
            row.id,
            Entity.INVOICE,
            STAGE_DONE,
            external_id="1",
            detail={
                "subject": "invoice:1",
                "customer": "c1",
                "stage": "overdue-30",
                "at": datetime(2026, 11, 2, 9, tzinfo=UTC).isoformat(),
                "contact": True,
            },
        )
    with store.reading() as tx:
        snap = snapshot(tx, fresh(store), POLICY, firm, tx.now)
    assert [(d.subject, d.stage, d.contact) for d in snap.history] == [
        ("invoice:1", "overdue-30", True)
    ]
    decision = plan(snap, POLICY, T).of("invoice:1")
    assert decision is not None and decision.status is Status.SCHEDULED
    assert decision.stage == "overdue-60"


def test_an_invoice_or_customer_is_found_by_what_a_person_types(store: Store) -> None:
    row = linked(store)
    apply(
        store,
        row,
        customer("c1", name="Émile Café"),
        customer("c2", name="HARBOR Ltd"),
        invoice("7", number="INV-0007"),
    )
    with store.reading() as tx:
        named = tx.records.named
        assert [r.id for r in named(row.id, Kind.INVOICE, "inv-0007")] == ["7"]
        assert [r.id for r in named(row.id, Kind.INVOICE, "7")] == ["7"]
        assert [r.id for r in named(row.id, Kind.CUSTOMER, "harbor ltd")] == ["c2"]
        assert [r.id for r in named(row.id, Kind.CUSTOMER, "Émile Café")] == ["c1"]
        assert named(row.id, Kind.CUSTOMER, "nobody") == []
