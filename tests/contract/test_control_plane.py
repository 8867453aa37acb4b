"""The control plane over HTTP: clock, fault plan, ledger, events and token faults."""

from __future__ import annotations

import httpx

from arsync.sandbox import Sandbox, SandboxServer


def test_overview_lists_companies_clients_and_base_urls(server: SandboxServer) -> None:
    body = httpx.get(f"{server.url}/_sandbox/").json()
    assert len(body["tenants"]) == 2
    assert body["base_urls"]["api.xero.com"] == f"{server.url}/xero/api"
    assert set(body["clients"]) == {"qbo", "xero"}


def test_clock_moves_freezes_and_refuses_bad_input(server: SandboxServer, sandbox: Sandbox) -> None:
    url = f"{server.url}/_sandbox/clock"
    frozen = httpx.post(url, json={"freeze": True}).json()
    assert frozen["frozen"] is True
    moved = httpx.post(url, json={"advance": 86400 * 30}).json()
    assert moved["now"] > frozen["now"]
    assert sandbox.clock.now().isoformat() == moved["now"]
    target = "2027-03-01T09:00:00+00:00"
    assert httpx.post(url, json={"set": target}).json()["now"] == target
    bad = httpx.post(url, json={"set": "next tuesday"})
    assert bad.status_code == 400
    assert "ISO 8601" in bad.json()["error"]
    assert httpx.post(url, json={"advance": -5}).status_code == 400
    assert httpx.post(url, json={"speed": 2}).status_code == 400
    assert httpx.post(url, content=b"{not json").status_code == 400


def test_fault_plan_round_trip(server: SandboxServer, sandbox: Sandbox) -> None:
    url = f"{server.url}/_sandbox/faults"
    added = httpx.post(
        url,
        json=[
            {"kind": "server_error", "platform": "xero", "endpoint": "GET *", "times": 2},
            {"kind": "slow", "params": {"delay": 1}},
        ],
    )
    assert added.status_code == 201
    ids = [r["id"] for r in added.json()]
    assert [r.kind.value for r in sandbox.faults.rules] == ["server_error", "slow"]
    assert httpx.delete(f"{url}/{ids[1]}").status_code == 204
    assert [r["id"] for r in httpx.get(url).json()] == [ids[0]]
    assert httpx.delete(f"{url}/999").status_code == 404
    bad = httpx.post(url, json={"kind": "meteor"})
    assert bad.status_code == 400
    assert "one of" in bad.json()["error"]
    assert httpx.delete(url).status_code == 204
    assert sandbox.faults.rules == []


def test_events_tokens_and_ledger(server: SandboxServer, sandbox: Sandbox) -> None:
    tenant = next(t for t in sandbox.tenants() if t.platform == "xero")
    tokens = sandbox.connect("xero", tenant.tenant_id)
    headers = {
        "Authorization": f"Bearer {tokens.access_token}",
        "xero-tenant-id": tenant.tenant_id,
        "Accept": "application/json",
    }
    api = f"{server.url}/xero/api/api.xro/2.0"
    invoices = httpx.get(
        f"{api}/Invoices", params={"Statuses": "AUTHORISED", "page": "1"}, headers=headers
    ).json()["Invoices"]
    target = next(i for i in invoices if i["Type"] == "ACCREC" and i["AmountDue"] > 0)
    paid = httpx.post(
        f"{server.url}/_sandbox/events",
        json={
            "platform": "xero",
            "tenant": tenant.tenant_id,
            "type": "payment",
            "invoice": target["InvoiceID"],
        },
    )
    assert paid.status_code == 200, paid.text
    after = httpx.get(f"{api}/Invoices/{target['InvoiceID']}", headers=headers).json()
    assert after["Invoices"][0]["AmountDue"] == 0
    assert after["Invoices"][0]["Status"] == "PAID"
    bad = httpx.post(
        f"{server.url}/_sandbox/events",
        json={"platform": "xero", "tenant": tenant.tenant_id, "type": "lottery_win"},
    )
    assert bad.status_code == 400
    expired = httpx.post(f"{server.url}/_sandbox/tokens/expire", json={"platform": "xero"})
    assert expired.json()["affected"] >= 1
    assert httpx.get(f"{api}/Invoices", headers=headers).status_code == 401
    ledger = httpx.get(
        f"{server.url}/_sandbox/ledger", params={"platform": "xero", "kind": "request"}
    ).json()
    statuses = [e["status"] for e in ledger["entries"]]
    assert statuses == [200, 200, 401]
    counts = httpx.get(f"{server.url}/_sandbox/ledger/counts", params={"platform": "xero"}).json()
    assert sum(counts.values()) == 3
    events = sandbox.ledger.entries(kind="business_event")
    assert len(events) == 1


def test_bad_input_gets_a_clear_400_never_a_crash(server: SandboxServer) -> None:
    base = f"{server.url}/_sandbox"
    cases: list[tuple[str, str, object, str]] = [
        ("GET", "/ledger?since=abc", None, "since: a whole number"),
        ("GET", "/ledger?status=x", None, "status: a whole number"),
        ("POST", "/events", [], "JSON object"),
        ("POST", "/events", {"platform": "qbo", "tenant": "nope", "type": "payment"}, "nope"),
        ("POST", "/events", {"platform": "sage", "tenant": "x", "type": "payment"}, "sage"),
        ("POST", "/faults?seed=x", {"kind": "drop"}, "seed: a whole number"),
        ("POST", "/faults", {"kind": "drop", "times": "many"}, "whole numbers"),
        ("POST", "/faults", {"kind": "drop", "skip": -1}, "negative"),
        ("POST", "/faults", {"kind": "drop", "params": [1]}, "params"),
        ("POST", "/tokens/expire", {"platform": "sage"}, "sage"),
        ("POST", "/tokens/expire", {}, "platform is required"),
        ("POST", "/clock", {"advance": "1e400"}, "100 years"),
        ("POST", "/clock", {"set": "2027-01-01T00:00:00"}, "UTC offset"),
    ]
    for method, path, body, message in cases:
        reply = httpx.request(method, base + path, json=body)
        assert reply.status_code == 400, (path, reply.text)
        assert message in reply.json()["error"], (path, reply.text)
