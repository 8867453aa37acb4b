"""Pausing from inside QuickBooks Online: a customer type ("Do not chase") and the customer's
Notes, as a bookkeeper sets them in QuickBooks, through python-quickbooks unmodified, the raw API
and arsync's connector, with the connector's calls counted by the sandbox's ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from intuitlib.client import AuthClient
from quickbooks import QuickBooks
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import QuickbooksException
from quickbooks.objects.customer import Customer as QbCustomer
from quickbooks.objects.customertype import CustomerType

from arsync.connectors.base import Endpoints, Limits, Link, Page, StaticTokens
from arsync.connectors.quickbooks.connector import QuickBooksConnector
from arsync.domain import Customer
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits
from tests.contract.qbo_support import (
    CLIENT,
    REDIRECT_URI,
    Api,
    api_base,
    connect_api,
    discovery_url,
    fault_codes,
    realm_of,
)
from tests.support import ConnectorRun, session_for

LIMITS = Limits(per_minute=100_000, per_second=10_000, concurrent=10, per_day=None)


@pytest.fixture(autouse=True)
def _plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests-oauthlib puts a bearer token on http:// only when told the transport is trusted;
    # the sandbox listens on loopback only.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def qb(server: SandboxServer, sandbox: Sandbox) -> QuickBooks:
    """python-quickbooks on a control-plane token (the consent flow is tested elsewhere)."""
    realm = realm_of(sandbox)
    auth = AuthClient(
        client_id=CLIENT.client_id,
        client_secret=CLIENT.client_secret,
        redirect_uri=REDIRECT_URI,
        environment=discovery_url(server),
    )
    auth.access_token = sandbox.connect("qbo", realm).access_token
    client = QuickBooks(auth_client=auth, company_id=realm, minorversion=75)
    # The only change to the SDK: its base URLs point at the sandbox.
    client.api_url_v3 = api_base(server) + "/v3"
    client.sandbox_api_url_v3 = api_base(server) + "/v3"
    return client


@pytest.fixture
def api(server: SandboxServer, sandbox: Sandbox) -> Iterator[Api]:
    client = connect_api(server, realm_of(sandbox))
    yield client
    client.close()


def bookkeeper(server: SandboxServer, realm: str, **event: Any) -> dict[str, Any]:
    """What a person does in QuickBooks itself, through the control plane over HTTP."""
    reply = httpx.post(
        f"{server.url}/_sandbox/events", json={"platform": "qbo", "tenant": realm, **event}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# -- the platform, through the SDK and the raw API -----------------------------------------------
def test_customer_types_are_read_and_queried_through_the_sdk(
    qb: QuickBooks, server: SandboxServer, sandbox: Sandbox
) -> None:
    realm = realm_of(sandbox)
    assert CustomerType.all(qb=qb) == []  # the books start without any
    pause = bookkeeper(server, realm, type="customer_type", name="Do not chase")
    bookkeeper(server, realm, type="customer_type", name="Slow payer")
    old = bookkeeper(server, realm, type="customer_type", name="Old terms", active=False)

    listed = CustomerType.all(qb=qb)
    assert sorted(t.Name for t in listed) == ["Do not chase", "Slow payer"]  # active ones only
    assert all(t.Active is True and t.MetaData.LastUpdatedTime for t in listed)
    (found,) = CustomerType.filter(Name="Do not chase", qb=qb)
    assert found.Id == pause["customer_type"]
    everything = CustomerType.where("Active IN (true, false)", qb=qb)
    assert len(everything) == 3
    inactive = CustomerType.get(old["customer_type"], qb=qb)  # GET /customertype/{id}
    assert (inactive.Name, inactive.Active) == ("Old terms", False)
    with pytest.raises(QuickbooksException):
        CustomerType.get("999", qb=qb)
    assert CustomerType.count(qb=qb) == 2

    # Renamed in QuickBooks: its LastUpdatedTime moves.
    before = found.MetaData.LastUpdatedTime
    sandbox.clock.advance(timedelta(minutes=1))
    bookkeeper(server, realm, type="customer_type_edit", customer_type=found.Id, name="Paused")
    renamed = CustomerType.get(found.Id, qb=qb)
    assert renamed.Name == "Paused" and renamed.MetaData.LastUpdatedTime > before


def test_the_api_cannot_create_or_change_a_customer_type(
    api: Api, server: SandboxServer, sandbox: Sandbox
) -> None:
    made = bookkeeper(server, realm_of(sandbox), type="customer_type", name="Do not chase")
    for body, params, operation in (
        ({"Name": "VIP"}, {}, "Create"),
        ({"Id": made["customer_type"], "SyncToken": "0", "Name": "VIP"}, {}, "Update"),
        ({"Id": made["customer_type"], "SyncToken": "0"}, {"operation": "delete"}, "Delete"),
    ):
        refused = api.post("customertype", body, **params)
        assert refused.status_code == 400
        error = refused.json()["Fault"]["Error"][0]
        assert (error["code"], error["Message"]) == ("500", "Unsupported Operation")
        assert error["Detail"] == f"Operation {operation} is not supported."
    batch = api.post(
        "batch",
        {"BatchItemRequest": [{"bId": "1", "operation": "create", "CustomerType": {"Name": "X"}}]},
    ).json()
    assert fault_codes(batch["BatchItemResponse"][0]) == ["500"]
    assert [t.name for t in sandbox.qbo.company(realm_of(sandbox)).customer_types.values()] == [
        "Do not chase"
    ]


def test_a_customer_paused_in_quickbooks_reads_back_with_its_type_and_notes(
    qb: QuickBooks, server: SandboxServer, sandbox: Sandbox
) -> None:
    realm = realm_of(sandbox)
    company = sandbox.qbo.company(realm)
    target = next(c for c in company.customers.values() if c.active)
    plain = QbCustomer.get(target.id, qb=qb)
    assert plain.Notes == "" and not hasattr(plain, "CustomerTypeRef")  # nothing until set
    assert (plain.BillAddr.Country, plain.BillAddr.CountrySubDivisionCode) == ("USA", "CA")

    pause = bookkeeper(server, realm, type="customer_type", name="Do not chase")
    sandbox.clock.advance(timedelta(minutes=1))
    edited_at = sandbox.clock.now()
    bookkeeper(
        server,
        realm,
        type="customer_edit",
        customer=str(target.id),
        notes="Paused: disputed delivery, call before chasing",
        customer_type=pause["customer_type"],
        country="Canada",
        region="ON",
    )
    read = QbCustomer.get(target.id, qb=qb)
    assert read.Notes == "Paused: disputed delivery, call before chasing"
    assert read.CustomerTypeRef == {"value": pause["customer_type"]}
    assert (read.BillAddr.Country, read.BillAddr.CountrySubDivisionCode) == ("Canada", "ON")
    assert int(read.SyncToken) == int(plain.SyncToken) + 1
    assert datetime.fromisoformat(read.MetaData["LastUpdatedTime"]) == edited_at

    # The change moved LastUpdatedTime: CDC and a query on it both return the customer.
    since = (edited_at - timedelta(seconds=1)).isoformat()
    changed = change_data_capture([QbCustomer], since, qb=qb)
    assert [c.Id for c in changed.Customer] == [str(target.id)]
    queried = QbCustomer.where(f"MetaData.LastUpdatedTime >= '{edited_at.isoformat()}'", qb=qb)
    assert [c.Id for c in queried] == [str(target.id)]

    # Taken off again: no CustomerTypeRef at all, as QuickBooks writes it.
    bookkeeper(server, realm, type="customer_edit", customer=str(target.id), customer_type=None)
    assert not hasattr(QbCustomer.get(target.id, qb=qb), "CustomerTypeRef")


def test_notes_through_a_sparse_update_and_the_sdks_full_save(
    qb: QuickBooks, api: Api, server: SandboxServer, sandbox: Sandbox
) -> None:
    realm = realm_of(sandbox)
    company = sandbox.qbo.company(realm)
    target = next(c for c in company.customers.values() if c.active)
    pause = bookkeeper(server, realm, type="customer_type", name="Do not chase")
    body = {"Id": str(target.id), "SyncToken": str(target.sync), "sparse": True}
    sparse = api.post(
        "customer",
        {**body, "Notes": "On hold", "CustomerTypeRef": {"value": pause["customer_type"]}},
    )
    assert sparse.status_code == 200, sparse.text
    saved = sparse.json()["Customer"]
    assert (saved["Notes"], saved["CustomerTypeRef"]) == (
        "On hold",
        {"value": pause["customer_type"]},
    )
    assert saved["DisplayName"] == target.display_name  # a sparse update keeps the rest
    too_long = api.post("customer", {**body, "SyncToken": saved["SyncToken"], "Notes": "x" * 2001})
    assert too_long.status_code == 400 and fault_codes(too_long.json()) == ["2040"]
    bad_type = api.post(
        "customer",
        {**body, "SyncToken": saved["SyncToken"], "CustomerTypeRef": {"value": "404"}},
    )
    assert fault_codes(bad_type.json()) == ["2500"]

    # python-quickbooks sends the whole object back; the type and notes it read stay.
    customer = QbCustomer.get(target.id, qb=qb)
    customer.Notes = "Promised to pay on the 20th"
    customer.save(qb=qb)
    again = QbCustomer.get(target.id, qb=qb)
    assert again.Notes == "Promised to pay on the 20th"
    assert again.CustomerTypeRef == {"value": pause["customer_type"]}


# -- arsync's connector ---------------------------------------------------------------------------
@dataclass
class World(ConnectorRun):
    connector: QuickBooksConnector
    server: SandboxServer

    def event(self, **event: Any) -> dict[str, Any]:
        """A bookkeeper's change a minute after the last pull and a minute before the next (CDC's
        changedSince is inclusive)."""
        self.sandbox.clock.advance(timedelta(minutes=1))
        result = bookkeeper(self.server, self.tenant, **event)
        self.sandbox.clock.advance(timedelta(minutes=1))
        return result

    def customers(self, pages: list[Page]) -> dict[str, Customer]:
        return {i.id: i for p in pages for i in p.items if isinstance(i, Customer)}


@pytest.fixture
def world(sandbox_factory: Callable[..., Sandbox]) -> Iterator[World]:
    # The test clock is frozen, so rate windows never slide: raise the limits for many calls.
    sandbox = sandbox_factory(qbo=QboLimits(per_second=10_000, per_minute=100_000))
    with SandboxServer(sandbox) as server:
        realm = realm_of(sandbox)
        link = Link("harbor", "qbo", realm, Endpoints.sandbox("qbo", server.url).api_base, LIMITS)
        tokens = StaticTokens(sandbox.connect("qbo", realm).access_token)
        session = session_for(sandbox, "qbo", tokens, LIMITS)
        try:
            yield World(sandbox, "qbo", realm, QuickBooksConnector(link, session), server)
        finally:
            session.close()


def settled(world: World) -> dict[str, Any]:
    """The cursor after a full pull and a first increment (which re-reads the pass's instant)."""
    state = world.pull(None)[-1].cursor
    world.sandbox.clock.advance(timedelta(minutes=1))
    return world.pull(state)[-1].cursor


def test_a_full_pass_names_each_customers_type_notes_and_place(world: World) -> None:
    company = world.sandbox.qbo.company(world.tenant)
    first, second, third = [c for c in company.customers.values() if c.active][:3]
    pause = world.event(type="customer_type", name="Do not chase")["customer_type"]
    world.event(type="customer_type", name="Slow payer")
    world.event(
        type="customer_edit",
        customer=str(first.id),
        customer_type=pause,
        notes="Paused until the dispute is settled",
    )
    world.event(type="customer_edit", customer=str(second.id), country="United Kingdom", region="")
    world.event(type="customer_edit", customer=str(third.id), country="Georgia", region="GA")

    before = world.calls()
    pages = world.pull(None)
    # CompanyInfo, Preferences, the customer types, then one page per entity
    assert world.calls() - before == 2 + 1 + 4
    customers = world.customers(pages)
    assert (customers[str(first.id)].tags, customers[str(first.id)].notes) == (
        ("Do not chase",),
        "Paused until the dispute is settled",
    )
    assert (customers[str(first.id)].country, customers[str(first.id)].region) == ("US", "CA")
    assert (customers[str(second.id)].country, customers[str(second.id)].region) == ("GB", None)
    # "Georgia" may be the country or the state: not guessed at
    assert (customers[str(third.id)].country, customers[str(third.id)].region) == (None, "GA")
    untouched = [c for i, c in customers.items() if i not in {str(first.id), str(second.id)}]
    assert all(c.tags == () and c.notes is None for c in untouched)
    cursor = pages[-1].cursor
    assert sorted(cursor["customer_types"].values()) == ["Do not chase", "Slow payer"]


def test_steady_state_costs_one_call_and_a_new_type_one_more(world: World) -> None:
    company = world.sandbox.qbo.company(world.tenant)
    target, other = [c for c in company.customers.values() if c.active][:2]
    pause = world.event(type="customer_type", name="Do not chase")["customer_type"]
    world.event(type="customer_edit", customer=str(other.id), customer_type=pause)
    state = settled(world)  # the full pass met a typed customer: it read the types

    # A known type given to a customer, and notes: the one CDC call brings both.
    world.event(type="customer_edit", customer=str(target.id), customer_type=pause, notes="Hold")
    before = world.calls()
    pages = world.pull(state)
    assert world.calls() - before == 1
    state = pages[-1].cursor
    assert world.customers(pages)[str(target.id)].tags == ("Do not chase",)
    assert world.customers(pages)[str(target.id)].notes == "Hold"

    # A type made since the cursor read them: read again, once, in that cycle.
    slow = world.event(type="customer_type", name="Slow payer")["customer_type"]
    world.event(type="customer_edit", customer=str(target.id), customer_type=slow)
    world.event(type="customer_edit", customer=str(other.id), customer_type=slow)
    before = world.calls()
    pages = world.pull(state)
    assert world.calls() - before == 1 + 1
    state = pages[-1].cursor
    tags = {i: c.tags for i, c in world.customers(pages).items()}
    assert tags == {str(target.id): ("Slow payer",), str(other.id): ("Slow payer",)}

    # Back to steady state: one call.
    world.event(type="customer_edit", customer=str(other.id), notes="Paying in instalments")
    before = world.calls()
    pages = world.pull(state)
    assert world.calls() - before == 1
    assert world.customers(pages)[str(other.id)].tags == ("Slow payer",)

    # An idle cycle: still one call.
    world.sandbox.clock.advance(timedelta(minutes=5))
    before = world.calls()
    world.pull(pages[-1].cursor)
    assert world.calls() - before == 1


def test_a_type_made_inactive_before_arsync_saw_it_is_read_by_id(world: World) -> None:
    company = world.sandbox.qbo.company(world.tenant)
    target = next(c for c in company.customers.values() if c.active)
    state = settled(world)
    old = world.event(type="customer_type", name="Old terms")["customer_type"]
    world.event(type="customer_edit", customer=str(target.id), customer_type=old)
    world.event(type="customer_type_edit", customer_type=old, active=False)
    world.event(type="customer_edit", customer=str(target.id), notes="Still on old terms")

    before = world.calls()
    pages = world.pull(state)
    # CDC; the types again (the inactive one is not listed); then that one by Id
    assert world.calls() - before == 3
    counts = world.sandbox.ledger.request_counts("qbo")
    assert counts["GET /v3/company/{realmId}/customertype/{id}"] == 1
    assert world.customers(pages)[str(target.id)].tags == ("Old terms",)
    assert pages[-1].cursor["customer_types"][old] == "Old terms"
