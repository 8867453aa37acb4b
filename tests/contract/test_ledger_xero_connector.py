"""arsync's Xero connector brings a bookkeeper's pauses and promises into the store, whatever the
unknowns are: whether joining a contact group moves the contact's UpdatedDateUTC, and whether
setting an invoice's Expected Date moves the invoice's. The sandbox is served behind the OpenAPI
gate, so every request the connector sends is also one Xero's file allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from starlette.types import ASGIApp

from arsync.connectors.base import Endpoints, Limits, Link, Page, StaticTokens
from arsync.connectors.xero.connector import XeroConnector
from arsync.domain import Customer, Invoice, Kind
from arsync.sandbox import SandboxServer
from arsync.sandbox.core import XeroLimits
from arsync.sandbox.xero import state as xstate
from arsync.store import Store
from tests.contract.openapi_gate import OpenApiGate, load_accounting_spec
from tests.support import ConnectorRun, make_sandbox, session_for, store_for

LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
GROUPS = "/api.xro/2.0/ContactGroups"


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return load_accounting_spec()


@dataclass
class World(ConnectorRun):
    connector: XeroConnector
    gate: OpenApiGate
    store: Store
    connector_id: int

    @property
    def org(self) -> xstate.Organisation:
        return self.sandbox.xero.orgs[self.tenant]

    def event(self, **event: Any) -> dict[str, Any]:
        """A bookkeeper's change a minute after the last pull, and a minute before the next."""
        self.sandbox.clock.advance(timedelta(minutes=1))
        result = self.sandbox.event("xero", self.tenant, event)
        self.sandbox.clock.advance(timedelta(minutes=1))
        return result

    def sync(self, state: dict[str, Any] | None, *, sweep: bool = False) -> list[Page]:
        """One pull, every page committed to the store as the sync engine commits it."""
        pages = self.pull(state, force_sweep=sweep, local_open=self.local_open)
        for page in pages:
            with self.store.transaction() as tx:
                tx.records.apply_page(self.connector_id, None, page)
        return pages

    def local_open(self) -> set[str]:
        with self.store.reading() as tx:
            invoices = tx.records.live(self.connector_id, Kind.INVOICE)
        return {i for i, inv in invoices.items() if isinstance(inv, Invoice) and inv.balance > 0}

    def customer(self, contact_id: str) -> Customer:
        with self.store.reading() as tx:
            found = tx.records.live(self.connector_id, Kind.CUSTOMER)[contact_id]
        assert isinstance(found, Customer)
        return found

    def invoice(self, invoice_id: str) -> Invoice:
        with self.store.reading() as tx:
            found = tx.records.live(self.connector_id, Kind.INVOICE)[invoice_id]
        assert isinstance(found, Invoice)
        return found

    def rechecks(self, since_seq: int) -> int:
        entries = self.sandbox.ledger.entries(
            kind="request", tenant=self.tenant, since_seq=since_seq
        )
        return sum("IDs=" in str(e.detail.get("query", "")) for e in entries)

    def group_calls(self, since_seq: int) -> list[str]:
        """The contact-group calls the ledger holds after entry `since_seq`."""
        entries = self.sandbox.ledger.entries(
            kind="request", tenant=self.tenant, since_seq=since_seq
        )
        return [e.endpoint or "" for e in entries if "ContactGroups" in (e.endpoint or "")]


def world_for(spec: OpenAPI, tmp_path: Path, *, moves: bool) -> Iterator[World]:
    # The clock is frozen, so the minute window never slides: lift the limits for many calls.
    sandbox = make_sandbox(
        xero=XeroLimits(
            per_minute=100_000,
            per_day=1_000_000,
            group_change_moves_contact=moves,
            expected_date_moves_invoice=moves,
        )
    )
    gates: list[OpenApiGate] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        gates.append(OpenApiGate(app, spec))
        return gates[-1]

    with SandboxServer(sandbox, wrap=wrap) as server:
        tenant = sandbox.xero.tenants()[0].tenant_id
        link = Link(
            "kestrel", "xero", tenant, Endpoints.sandbox("xero", server.url).api_base, LIMITS
        )
        tokens = StaticTokens(sandbox.connect("xero", tenant).access_token)
        session = session_for(sandbox, "xero", tokens, LIMITS)
        store = store_for(sandbox, f"sqlite:///{tmp_path / 'arsync.db'}")
        with store.transaction() as tx:
            connector_id = tx.connectors.ensure("kestrel", "xero").id
        try:
            yield World(
                sandbox, "xero", tenant, XeroConnector(link, session), gates[0], store, connector_id
            )
        finally:
            session.close()
            store.close()
        assert gates[0].refused == [], [(c.method, c.path, c.errors) for c in gates[0].refused]


@pytest.fixture(params=[False, True], ids=["unknowns-stay", "unknowns-move"])
def world(request: pytest.FixtureRequest, spec: OpenAPI, tmp_path: Path) -> Iterator[World]:
    yield from world_for(spec, tmp_path, moves=request.param)


@pytest.fixture
def still(spec: OpenAPI, tmp_path: Path) -> Iterator[World]:
    """The sandbox's defaults: neither a group change nor an expected date moves anything."""
    yield from world_for(spec, tmp_path, moves=False)


def moves(world: World) -> bool:
    return world.sandbox.settings.xero.group_change_moves_contact


# -- the full pass --------------------------------------------------------------------------------
def test_a_full_pass_brings_groups_places_and_promises(still: World) -> None:
    world = still
    org = world.org
    first, second, third = (c.contact_id for c in org.contact_list[:3])
    pause = world.event(type="group_create", name="Do not chase")["ContactGroupID"]
    slow = world.event(type="group_create", name="Slow payers")["ContactGroupID"]
    gone = world.event(type="group_create", name="Old list")["ContactGroupID"]
    world.event(type="group_members", group=pause, add=[first, second])
    world.event(type="group_members", group=slow, add=[second])
    world.event(type="group_members", group=gone, add=[third])
    world.event(type="group_edit", group=gone, status="DELETED")
    world.event(type="contact_address", contact=third, country="Deutschland", region="Bayern")
    promised = next(i for i in org.invoice_list if i.type == "ACCREC" and i.status == "AUTHORISED")
    world.event(type="expected_date", invoice=promised.invoice_id, date="2026-12-20")

    before = world.calls()
    pages = world.sync(None)
    # the organisation, one page of contacts, the groups (the list and each of the 2 active
    # ones), then one page each of invoices, payments and credit notes
    assert world.calls() - before == 1 + 1 + (1 + 2) + 3
    assert world.group_calls(0) == [
        "GET /api.xro/2.0/ContactGroups",
        "GET /api.xro/2.0/ContactGroups/{ContactGroupID}",
        "GET /api.xro/2.0/ContactGroups/{ContactGroupID}",
    ]
    assert [p for p in pages if p.tags is not None] == [pages[-1]]  # the pass's last page

    assert world.customer(first).tags == ("Do not chase",)
    assert world.customer(second).tags == ("Do not chase", "Slow payers")
    assert world.customer(third).tags == ()  # its only group was deleted
    assert (world.customer(third).country, world.customer(third).region) == ("DE", "Bayern")
    # the books' own addresses by currency ("United Kingdom", "Ireland", "United States")
    countries = {world.customer(c.contact_id).country for c in org.contact_list}
    assert countries == {"GB", "IE", "US", "DE"}
    assert world.invoice(promised.invoice_id).expected_date == date(2026, 12, 20)
    assert all(
        world.invoice(i.invoice_id).expected_date is None
        for i in org.invoice_list
        if i.type == "ACCREC" and i.status != "DELETED" and i is not promised
    )


# -- pausing: contact groups ----------------------------------------------------------------------
def test_a_pause_reaches_the_store_by_the_next_sweep_whatever_the_setting(world: World) -> None:
    org = world.org
    first, second = (c.contact_id for c in org.contact_list[:2])
    pause = world.event(type="group_create", name="Do not chase")["ContactGroupID"]
    world.event(type="group_create", name="Disputes")
    state = world.sync(None)[-1].cursor
    assert world.customer(first).tags == ()

    world.event(type="group_members", group=pause, add=[first, second])
    pages = world.sync(state)
    state = pages[-1].cursor
    # Only a contact whose UpdatedDateUTC moved comes with the cycle (with its groups).
    expected = ("Do not chase",) if moves(world) else ()
    assert world.customer(first).tags == world.customer(second).tags == expected
    assert world.group_calls(0).count("GET /api.xro/2.0/ContactGroups") == 1  # the full pass's

    before = world.sandbox.ledger.last_seq
    calls = world.calls()
    pages = world.sync(state, sweep=True)
    state = pages[-1].cursor
    assert world.customer(first).tags == world.customer(second).tags == ("Do not chase",)
    # the sweep reads the groups once: the list, and each of the 2 active groups
    assert len(world.group_calls(before)) == 1 + 2
    # invoices and contacts since the last cycle, the groups, the open invoices, the re-read of
    # those held open that Xero no longer lists as open (the drafts here), payments and credits
    assert world.calls() - calls == 2 + (1 + 2) + 1 + world.rechecks(before) + 2

    # Taken out of the group, and the group deleted: the next sweep takes the labels off.
    world.event(type="group_members", group=pause, remove=[first])
    world.event(type="group_edit", group=pause, status="DELETED")
    pages = world.sync(state)
    state = pages[-1].cursor
    if moves(world):
        assert world.customer(first).tags == world.customer(second).tags == ()
    else:
        assert world.customer(first).tags == world.customer(second).tags == ("Do not chase",)
    before = world.sandbox.ledger.last_seq
    world.sync(state, sweep=True)
    assert world.customer(first).tags == world.customer(second).tags == ()
    assert len(world.group_calls(before)) == 1 + 1  # the list, and the one group left


# -- promising: the expected payment date ---------------------------------------------------------
def test_a_promise_reaches_the_store_by_the_next_sweep_whatever_the_setting(world: World) -> None:
    org = world.org
    state = world.sync(None)[-1].cursor
    promised, partly = _two_open(org)
    world.event(type="payment", invoice=partly.invoice_id, amount="1.00")
    state = world.sync(state)[-1].cursor

    world.event(type="expected_date", invoice=promised.invoice_id, date="2026-12-20")
    world.event(type="expected_date", invoice=partly.invoice_id, date="2027-01-08")
    calls = world.calls()
    state = world.sync(state)[-1].cursor
    cycle = world.calls() - calls
    if moves(world):
        # the invoices moved: read with If-Modified-Since, then payments and credit notes
        assert cycle == 4
        assert world.invoice(promised.invoice_id).expected_date == date(2026, 12, 20)
        assert world.invoice(partly.invoice_id).expected_date == date(2027, 1, 8)
    else:
        assert cycle == 2  # nothing moved: only the sweep can see it
        assert world.invoice(promised.invoice_id).expected_date is None
        assert world.invoice(partly.invoice_id).expected_date is None

    state = world.sync(state, sweep=True)[-1].cursor
    assert world.invoice(promised.invoice_id).expected_date == date(2026, 12, 20)
    assert world.invoice(partly.invoice_id).expected_date == date(2027, 1, 8)

    # Cleared (the promise withdrawn): the sweep sees that too.
    world.event(type="expected_date", invoice=promised.invoice_id, date=None)
    world.sync(state, sweep=True)
    assert world.invoice(promised.invoice_id).expected_date is None
    assert world.invoice(partly.invoice_id).expected_date == date(2027, 1, 8)


def _two_open(org: xstate.Organisation) -> tuple[xstate.Invoice, xstate.Invoice]:
    found = [
        i
        for i in org.invoice_list
        if i.type == "ACCREC" and i.status == "AUTHORISED" and not i.payments and i.amount_due > 5
    ]
    return found[0], found[1]


def test_the_writes_a_bookkeepers_tools_send_are_what_the_spec_allows(still: World) -> None:
    """The same requests xero-python sends (see test_ledger_xero_sdk), through the gate."""
    world = still
    org = world.org
    server_url = world.connector.link.api_base
    token = world.sandbox.connect("xero", world.tenant).access_token
    headers = {
        "Authorization": f"Bearer {token}",
        "xero-tenant-id": world.tenant,
        "Accept": "application/json",
    }
    contact = org.contact_list[0].contact_id
    invoice = next(i for i in org.invoice_list if i.type == "ACCREC" and i.status == "AUTHORISED")
    with httpx.Client(base_url=f"{server_url}/api.xro/2.0", headers=headers, timeout=10) as xero:
        made = xero.put("/ContactGroups", json={"ContactGroups": [{"Name": "Do not chase"}]})
        group = made.json()["ContactGroups"][0]["ContactGroupID"]
        replies = [
            made,
            xero.put(
                f"/ContactGroups/{group}/Contacts", json={"Contacts": [{"ContactID": contact}]}
            ),
            xero.get(f"/ContactGroups/{group}"),
            xero.delete(f"/ContactGroups/{group}/Contacts/{contact}"),
            xero.delete(f"/ContactGroups/{group}/Contacts"),
            xero.post(f"/ContactGroups/{group}", json={"ContactGroups": [{"Status": "DELETED"}]}),
            xero.post(
                f"/Invoices/{invoice.invoice_id}",
                json={"Invoices": [{"ExpectedPaymentDate": "/Date(1797724800000)/"}]},
            ),
            xero.post(
                f"/Invoices/{invoice.invoice_id}",
                json={"Invoices": [{"ExpectedPaymentDateString": ""}]},
            ),
        ]
    assert [r.status_code for r in replies] == [200, 200, 200, 204, 204, 200, 200, 200]
    assert world.gate.refused == []
    assert len(world.gate.checked) == len(replies)
    assert invoice.expected_payment_date is None and org.active_groups() == []
