"""Pausing and promising inside Xero, through xero-python unmodified and Xero's OpenAPI file.

A bookkeeper pauses a customer by putting the contact into a contact group ("Do not chase"), and
records a promise to pay as an invoice's Expected Date (ExpectedPaymentDate). The SDK's own calls
must work against the sandbox, and every new answer must be what xero_accounting.yaml documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import (
    Contact,
    ContactGroup,
    ContactGroups,
    Contacts,
    Invoice,
    Invoices,
)
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import AccountingBadRequestException, NotFoundException

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import XeroLimits
from arsync.sandbox.xero import state as xstate
from tests.contract import xero_support as xs
from tests.contract.openapi_gate import load_accounting_spec
from tests.contract.test_xero_openapi import check
from tests.support import make_sandbox


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return load_accounting_spec()


@pytest.fixture
def api(server: SandboxServer) -> AccountingApi:
    """xero-python's AccountingApi with tokens from the consent page; only its URL is ours."""
    token = xs.connect(server)
    client = ApiClient(
        Configuration(oauth2_token=OAuth2Token(xs.CLIENT.client_id, xs.CLIENT.client_secret)),
        pool_threads=1,
    )
    client.oauth2_token_getter(lambda: dict(token))
    client.oauth2_token_saver(lambda new: token.update(new))
    return AccountingApi(client, base_url=f"{server.urls()['api.xero.com']}/api.xro/2.0")


@pytest.fixture
def raw(server: SandboxServer, sandbox: Sandbox) -> Iterator[httpx.Client]:
    tokens = xs.connect(server)
    with xs.api(server, tokens["access_token"], xs.tenant_of(sandbox)) as client:
        yield client


def org_of(sandbox: Sandbox) -> xstate.Organisation:
    return sandbox.xero.orgs[xs.tenant_of(sandbox)]


def open_invoice(org: xstate.Organisation) -> xstate.Invoice:
    return next(i for i in org.invoice_list if i.type == "ACCREC" and i.status == "AUTHORISED")


# -- contact groups -------------------------------------------------------------------------------
def test_contact_groups_through_the_sdk(api: AccountingApi, sandbox: Sandbox) -> None:
    tenant = xs.tenant_of(sandbox)
    org = org_of(sandbox)
    first, second, third = org.contact_list[:3]
    before = {c.contact_id: c.updated for c in org.contact_list}

    made = api.create_contact_group(
        tenant,
        ContactGroups(contact_groups=[ContactGroup(name="Do not chase")]),
        idempotency_key="group-1",
    ).contact_groups
    assert [(g.name, g.status) for g in made] == [("Do not chase", "ACTIVE")]
    group_id = made[0].contact_group_id
    assert made[0].contacts == []

    added = api.create_contact_group_contacts(
        tenant,
        group_id,
        Contacts(contacts=[Contact(contact_id=c.contact_id) for c in (first, second, third)]),
    ).contacts
    assert [str(c.contact_id) for c in added] == [
        first.contact_id,
        second.contact_id,
        third.contact_id,
    ]

    listed = api.get_contact_groups(tenant).contact_groups
    assert [(str(g.contact_group_id), g.name) for g in listed] == [(str(group_id), "Do not chase")]
    assert listed[0].contacts == []  # members only come with the group's own read
    filtered = api.get_contact_groups(tenant, where='Status=="ACTIVE"', order="Name ASC")
    assert len(filtered.contact_groups) == 1
    one = api.get_contact_group(tenant, group_id).contact_groups[0]
    assert [str(c.contact_id) for c in one.contacts] == [
        first.contact_id,
        second.contact_id,
        third.contact_id,
    ]
    assert one.contacts[0].name == first.name

    api.delete_contact_group_contact(tenant, group_id, second.contact_id)
    one = api.get_contact_group(tenant, group_id).contact_groups[0]
    assert [str(c.contact_id) for c in one.contacts] == [first.contact_id, third.contact_id]

    # A contact's own read and a paged list name its groups; an unpaged list does not.
    single = api.get_contact(tenant, first.contact_id).contacts[0]
    assert [g.name for g in single.contact_groups] == ["Do not chase"]
    paged = {str(c.contact_id): c for c in api.get_contacts(tenant, page=1).contacts}
    assert [g.name for g in paged[first.contact_id].contact_groups] == ["Do not chase"]
    assert paged[second.contact_id].contact_groups == []
    unpaged = {str(c.contact_id): c for c in api.get_contacts(tenant).contacts}
    assert unpaged[first.contact_id].contact_groups == []
    # By default, joining or leaving a group leaves a contact's UpdatedDateUTC alone.
    assert {c.contact_id: c.updated for c in org.contact_list} == before

    with pytest.raises(AccountingBadRequestException) as refused:
        api.create_contact_group(
            tenant, ContactGroups(contact_groups=[ContactGroup(name="do not chase")])
        )
    assert refused.value.error_data["Type"] == "ValidationException"

    # Deleting a group is an update of its Status; no GET shows it after.
    api.update_contact_group(
        tenant, group_id, ContactGroups(contact_groups=[ContactGroup(status="DELETED")])
    )
    assert api.get_contact_groups(tenant).contact_groups == []
    with pytest.raises(NotFoundException):
        api.get_contact_group(tenant, group_id)
    assert api.get_contact(tenant, first.contact_id).contacts[0].contact_groups == []


def test_contact_group_answers_are_what_the_spec_documents(
    spec: OpenAPI, sandbox: Sandbox, raw: httpx.Client
) -> None:
    org = org_of(sandbox)
    contact = org.contact_list[0].contact_id
    made = raw.put("/ContactGroups", json={"ContactGroups": [{"Name": "Disputes"}]})
    assert made.status_code == 200, made.text
    check(spec, made)
    group = made.json()["ContactGroups"][0]["ContactGroupID"]
    added = raw.put(f"/ContactGroups/{group}/Contacts", json={"Contacts": [{"ContactID": contact}]})
    assert added.status_code == 200, added.text
    check(spec, added)
    for path, params in (
        ("/ContactGroups", {}),
        ("/ContactGroups", {"where": 'Name=="Disputes"'}),
        (f"/ContactGroups/{group}", {}),
        (f"/Contacts/{contact}", {}),
        ("/Contacts", {"page": "1"}),
        ("/Contacts", {}),
    ):
        response = raw.get(path, params=params)
        assert response.status_code == 200, response.text
        check(spec, response)
    renamed = raw.post(f"/ContactGroups/{group}", json={"ContactGroups": [{"Name": "On hold"}]})
    assert renamed.status_code == 200 and renamed.json()["ContactGroups"][0]["Name"] == "On hold"
    check(spec, renamed)
    unknown = raw.put(
        f"/ContactGroups/{group}/Contacts",
        json={"Contacts": [{"ContactID": "00000000-0000-4000-8000-000000000000"}]},
    )
    assert unknown.status_code == 400 and unknown.json()["ErrorNumber"] == 10
    check(spec, unknown)
    removed = raw.delete(f"/ContactGroups/{group}/Contacts/{contact}")
    assert removed.status_code == 204
    check(spec, removed)
    raw.put(f"/ContactGroups/{group}/Contacts", json={"Contacts": [{"ContactID": contact}]})
    cleared = raw.delete(f"/ContactGroups/{group}/Contacts")
    assert cleared.status_code == 204
    check(spec, cleared)
    assert org.groups[group].members == {}


def test_a_hundred_groups_is_the_limit(raw: httpx.Client, sandbox: Sandbox) -> None:
    names = [{"Name": f"G{n}"} for n in range(xstate.MAX_CONTACT_GROUPS + 1)]
    over = raw.put("/ContactGroups", json={"ContactGroups": names})
    assert over.status_code == 400
    message = over.json()["Elements"][0]["ValidationErrors"][0]["Message"]
    assert "limit of 100 contact groups" in message
    assert org_of(sandbox).group_list == []  # all or nothing
    assert raw.put("/ContactGroups", json={"ContactGroups": names[:-1]}).is_success
    assert len(org_of(sandbox).active_groups()) == xstate.MAX_CONTACT_GROUPS


@pytest.mark.parametrize("moves", [False, True])
def test_the_group_setting_decides_whether_a_member_moves(moves: bool) -> None:
    sandbox = make_sandbox(xero=XeroLimits(group_change_moves_contact=moves))
    org = org_of(sandbox)
    contact = org.contact_list[0]
    was = contact.updated
    made = sandbox.event("xero", org.tenant_id, {"type": "group_create", "name": "Do not chase"})
    sandbox.event(
        "xero",
        org.tenant_id,
        {"type": "group_members", "group": made["ContactGroupID"], "add": [contact.contact_id]},
    )
    assert (contact.updated == sandbox.clock.now()) is moves
    assert (contact.updated == was) is not moves


# -- the expected payment date --------------------------------------------------------------------
def test_expected_payment_date_through_the_sdk(
    api: AccountingApi, sandbox: Sandbox, raw: httpx.Client, spec: OpenAPI
) -> None:
    tenant = xs.tenant_of(sandbox)
    inv = open_invoice(org_of(sandbox))
    stamped = inv.updated
    updated = api.update_invoice(
        tenant,
        inv.invoice_id,
        Invoices(invoices=[Invoice(expected_payment_date=date(2026, 12, 20))]),
        idempotency_key="promise-1",
    ).invoices[0]
    assert updated.expected_payment_date == date(2026, 12, 20)
    assert api.get_invoice(tenant, inv.invoice_id).invoices[0].expected_payment_date == date(
        2026, 12, 20
    )
    summary = api.get_invoices(tenant, i_ds=[inv.invoice_id], summary_only=True).invoices[0]
    assert summary.expected_payment_date == date(2026, 12, 20)
    assert inv.updated == stamped  # by default, setting it leaves UpdatedDateUTC alone

    # As Xero's other dates: /Date(ms+0000)/, midnight UTC of the day.
    read = raw.get(f"/Invoices/{inv.invoice_id}")
    assert read.json()["Invoices"][0]["ExpectedPaymentDate"] == "/Date(1797724800000+0000)/"
    check(spec, read)

    # A date string, then clearing it: xero-python cannot send the empty string the clearing
    # needs (its model types the field as a date), so the raw API does.
    moved = raw.post(
        f"/Invoices/{inv.invoice_id}", json={"Invoices": [{"ExpectedPaymentDate": "2027-01-08"}]}
    )
    assert moved.status_code == 200, moved.text
    check(spec, moved)
    assert inv.expected_payment_date == date(2027, 1, 8)
    cleared = raw.post(f"/Invoices/{inv.invoice_id}", json={"ExpectedPaymentDateString": ""})
    assert cleared.status_code == 200
    assert "ExpectedPaymentDate" not in cleared.json()["Invoices"][0]
    assert api.get_invoice(tenant, inv.invoice_id).invoices[0].expected_payment_date is None

    # Nothing else is written through this sandbox's POST /Invoices/{id}: refused, not ignored.
    other = raw.post(f"/Invoices/{inv.invoice_id}", json={"Reference": "PO-1"})
    assert other.status_code == 400 and "Reference" in other.text
    check(spec, other)
    paid = next(i for i in org_of(sandbox).invoice_list if i.status == "PAID")
    late = raw.post(f"/Invoices/{paid.invoice_id}", json={"ExpectedPaymentDate": "2027-01-08"})
    assert late.status_code == 400


@pytest.mark.parametrize("moves", [False, True])
def test_the_expected_date_setting_decides_whether_the_invoice_moves(moves: bool) -> None:
    sandbox = make_sandbox(xero=XeroLimits(expected_date_moves_invoice=moves))
    inv = open_invoice(org_of(sandbox))
    was = inv.updated
    result = sandbox.event(
        "xero",
        org_of(sandbox).tenant_id,
        {"type": "expected_date", "invoice": inv.invoice_id, "date": "2026-12-20"},
    )
    assert result["UpdatedDateUTCMoved"] is moves
    assert inv.expected_payment_date == date(2026, 12, 20)
    assert (inv.updated == was) is not moves


def test_contact_addresses_carry_country_and_region(raw: httpx.Client, sandbox: Sandbox) -> None:
    org = org_of(sandbox)
    contact = org.contact_list[0]
    sandbox.event(
        "xero",
        org.tenant_id,
        {
            "type": "contact_address",
            "contact": contact.contact_id,
            "country": "New Zealand",
            "region": "Canterbury",
        },
    )
    body: dict[str, Any] = raw.get(f"/Contacts/{contact.contact_id}").json()
    billing = body["Contacts"][0]["Addresses"][0]
    assert (billing["AddressType"], billing["Country"], billing["Region"]) == (
        "POBOX",
        "New Zealand",
        "Canterbury",
    )
