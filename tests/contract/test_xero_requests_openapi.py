"""arsync's own Xero connector, run through a gate that holds every request to Xero's OpenAPI file.

The sandbox is served behind `OpenApiGate` (tests/contract/openapi_gate.py): a request below
api.xro/2.0 that xero_accounting.yaml does not allow is answered 400 before the sandbox sees it.
A full pass, an incremental cycle after business events and a forced sweep must pass untouched;
and the RFC 1123 If-Modified-Since arsync used to send is refused by the gate and the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from openapi_core import OpenAPI
from starlette.types import ASGIApp

from arsync.connectors.base import Endpoints, Limits, Link, StaticTokens
from arsync.connectors.xero.client import modified_since_header
from arsync.connectors.xero.connector import XeroConnector
from arsync.domain import Invoice, InvoiceStatus, Kind
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import XeroLimits
from tests.contract.openapi_gate import OpenApiGate, load_accounting_spec
from tests.support import ConnectorRun, make_sandbox, session_for

LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
ISO_SECOND_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return load_accounting_spec()


@dataclass
class Gated:
    sandbox: Sandbox
    server: SandboxServer
    gate: OpenApiGate

    @property
    def tenant(self) -> str:
        return self.sandbox.xero.tenants()[0].tenant_id

    def connector(self) -> XeroConnector:
        """arsync's connector on the gated sandbox, built as test_xero_connector_sandbox does."""
        api_base = Endpoints.sandbox("xero", self.server.url).api_base
        link = Link("kestrel", "xero", self.tenant, api_base, LIMITS)
        tokens = StaticTokens(self.sandbox.connect("xero", self.tenant).access_token)
        return XeroConnector(link, session_for(self.sandbox, "xero", tokens, LIMITS))


@pytest.fixture
def gated(spec: OpenAPI) -> Iterator[Gated]:
    # The clock is frozen, so the minute window never slides: lift the limits for many calls.
    sandbox = make_sandbox(xero=XeroLimits(per_minute=100_000, per_day=1_000_000))
    gates: list[OpenApiGate] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        gates.append(OpenApiGate(app, spec))
        return gates[-1]

    with SandboxServer(sandbox, wrap=wrap) as server:
        yield Gated(sandbox, server, gates[0])


def test_a_full_pass_a_cycle_and_a_sweep_send_only_what_the_spec_allows(gated: Gated) -> None:
    sandbox, tenant = gated.sandbox, gated.tenant
    org = sandbox.xero.orgs[tenant]
    connector = gated.connector()
    run = ConnectorRun(sandbox, "xero", tenant, connector)
    try:
        full = run.pull(None)
        assert {k for p in full for k in p.completed} == set(Kind)
        state = full[-1].cursor
        sandbox.clock.advance(timedelta(minutes=1))

        unpaid = [
            i
            for i in org.invoice_list
            if i.type == "ACCREC" and i.status == "AUTHORISED" and not i.payments
        ]
        paid, partly, credited = unpaid[0], unpaid[1], unpaid[2]
        sandbox.event("xero", tenant, {"type": "payment", "invoice": paid.invoice_id})
        sandbox.event(
            "xero", tenant, {"type": "payment", "invoice": partly.invoice_id, "amount": "1.00"}
        )
        sandbox.event(
            "xero", tenant, {"type": "credit", "invoice": credited.invoice_id, "amount": "1.00"}
        )
        contact = org.contact_list[0].contact_id
        made = sandbox.event(
            "xero", tenant, {"type": "create_invoice", "contact": contact, "amount": "99.00"}
        )
        sandbox.clock.advance(timedelta(minutes=1))

        cycle = run.pull(state)
        seen = {i.id: i for p in cycle for i in p.items if isinstance(i, Invoice)}
        assert {paid.invoice_id, partly.invoice_id, credited.invoice_id, made["InvoiceID"]} <= set(
            seen
        )
        assert seen[paid.invoice_id].status is InvoiceStatus.PAID
        state = cycle[-1].cursor
        sandbox.clock.advance(timedelta(minutes=1))

        # The store thinks the paid invoice and one that never existed are open: the sweep
        # re-reads both by id (IDs=...), besides every open invoice.
        ghost = "00000000-dead-4000-8000-000000000000"
        sweep = run.pull(state, force_sweep=True, local_open=lambda: {paid.invoice_id, ghost})
        assert any(p.stream == "open invoices" for p in sweep)
    finally:
        connector.session.close()

    gate = gated.gate
    assert gate.refused == [], [(c.method, c.path, c.query, c.errors) for c in gate.refused]
    paths = {c.path for c in gate.checked}
    assert {
        f"/api.xro/2.0/{name}"
        for name in ("Organisation", "Invoices", "Contacts", "Payments", "CreditNotes")
    } <= paths
    assert any("IDs=" in c.query for c in gate.checked), "the sweep's re-read by id"
    stamps = [
        c.headers["if-modified-since"] for c in gate.checked if "if-modified-since" in c.headers
    ]
    assert stamps, "the cycle reads with If-Modified-Since"
    assert all(ISO_SECOND_UTC.fullmatch(s) for s in stamps), stamps
    # Every checked request reached the sandbox and was answered there.
    answered = sandbox.ledger.entries(kind="request", platform="xero", tenant=tenant)
    accounting = [e for e in answered if "/api.xro/2.0/" in (e.endpoint or "")]
    assert len(accounting) == len(gate.checked)
    assert {e.status for e in accounting} == {200}


def test_the_old_rfc_1123_form_is_refused_by_the_gate_and_by_the_sandbox(gated: Gated) -> None:
    sandbox, tenant = gated.sandbox, gated.tenant
    since = sandbox.clock.now() - timedelta(hours=1)
    token = sandbox.connect("xero", tenant).access_token
    headers = {
        "Authorization": f"Bearer {token}",
        "xero-tenant-id": tenant,
        "Accept": "application/json",
    }
    old = format_datetime(since, usegmt=True)  # what arsync's client used to send
    new = modified_since_header(since)  # what it sends now
    assert (old, new) == ("Mon, 23 Nov 2026 14:00:00 GMT", "2026-11-23T14:00:00+00:00")

    def invoices(server: SandboxServer, stamp: str) -> httpx.Response:
        url = f"{server.urls()['api.xero.com']}/api.xro/2.0/Invoices"
        return httpx.get(url, headers={**headers, "If-Modified-Since": stamp}, timeout=10)

    before = sandbox.ledger.count(kind="request", tenant=tenant)
    refused = invoices(gated.server, old)
    assert refused.status_code == 400 and refused.headers["x-openapi-gate"] == "refused"
    assert "If-Modified-Since" in " ".join(refused.json()["Errors"])
    assert [c.headers["if-modified-since"] for c in gated.gate.refused] == [old]
    assert sandbox.ledger.count(kind="request", tenant=tenant) == before  # never reached it

    # The same request straight to the sandbox (no gate): Xero's validation error.
    with SandboxServer(sandbox) as plain:
        direct = invoices(plain, old)
        assert direct.status_code == 400
        body = direct.json()
        assert (body["ErrorNumber"], body["Type"]) == (10, "ValidationException")
        assert "If-Modified-Since" in body["Elements"][0]["ValidationErrors"][0]["Message"]
        assert invoices(plain, new).status_code == 200

    accepted = invoices(gated.server, new)
    assert accepted.status_code == 200 and "x-openapi-gate" not in accepted.headers
    assert len(gated.gate.refused) == 1


def test_the_gate_checks_bodies_and_lets_other_paths_through(gated: Gated) -> None:
    sandbox, tenant = gated.sandbox, gated.tenant
    token = sandbox.connect("xero", tenant).access_token
    invoice = next(i for i in sandbox.xero.orgs[tenant].invoice_list if i.status == "AUTHORISED")
    api = f"{gated.server.urls()['api.xero.com']}/api.xro/2.0"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with httpx.Client(headers=headers, timeout=10) as client:
        note = {"HistoryRecords": [{"Details": "Reminder sent"}]}
        history = f"{api}/Invoices/{invoice.invoice_id}/History"
        ok = client.put(history, json=note, headers={"xero-tenant-id": tenant})
        assert ok.status_code == 200, ok.text  # the body was read by the gate and replayed
        assert sandbox.ledger.count(kind="note_added", tenant=tenant) == 1
        no_tenant = client.put(history, json=note)
        assert no_tenant.status_code == 400 and "xero-tenant-id" in no_tenant.text
        bad_body = client.put(
            history, json={"HistoryRecords": "x"}, headers={"xero-tenant-id": tenant}
        )
        assert bad_body.status_code == 400 and bad_body.headers["x-openapi-gate"] == "refused"
        # outside api.xro/2.0: not checked
        assert client.get(gated.server.urls()["api.xero.com"] + "/connections").status_code == 200
    assert sandbox.ledger.count(kind="note_added", tenant=tenant) == 1
    assert [c.method for c in gated.gate.refused] == ["PUT", "PUT"]
