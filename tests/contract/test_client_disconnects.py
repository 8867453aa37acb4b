"""A client killed mid-request is a dropped request to the sandbox: no traceback, no error log.

Real failures inside the sandbox must still be logged; only the client's leaving is quiet.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from arsync.sandbox import FaultKind, Sandbox, SandboxServer


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged(server: SandboxServer) -> Iterator[list[logging.LogRecord]]:
    """Warnings and errors from uvicorn (tracebacks of the app) and from the sandbox itself.

    uvicorn's loggers do not propagate to the root logger, so caplog would not see them.
    """
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "arsync.sandbox")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _half_sent(server: SandboxServer, head: str, body_start: bytes) -> None:
    """Send the headers and part of a body that promises 1000 bytes, then hang up."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode("latin-1") + b"Content-Length: 1000\r\n\r\n" + body_start)
        time.sleep(0.1)  # the sandbox is reading the body when the client goes


def _requests(sandbox: Sandbox) -> int:
    return sandbox.ledger.count(kind="request")


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the sandbox never recorded the dropped requests"
        time.sleep(0.02)


def test_clients_that_hang_up_mid_body_leave_no_traceback(
    server: SandboxServer, sandbox: Sandbox, logged: list[logging.LogRecord]
) -> None:
    xero = sandbox.xero.tenants()[0].tenant_id
    realm = sandbox.qbo.tenants()[0].tenant_id
    xero_token = sandbox.connect("xero", xero).access_token
    qbo_token = sandbox.connect("qbo", realm).access_token
    invoice = sandbox.xero.orgs[xero].invoice_list[0].invoice_id
    xero_api = (
        "Host: sandbox\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {xero_token}\r\nxero-tenant-id: {xero}\r\n"
    )
    history = f"PUT /xero/api/api.xro/2.0/Invoices/{invoice}/History HTTP/1.1\r\n{xero_api}"
    form = "Host: sandbox\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    before = _requests(sandbox)
    _half_sent(server, history, b'{"HistoryRecords": [')
    _half_sent(server, history + "Idempotency-Key: k-1\r\n", b'{"HistoryRecords": [')
    _half_sent(
        server,
        f"POST /qbo/api/v3/company/{realm}/attachable HTTP/1.1\r\nHost: sandbox\r\n"
        f"Authorization: Bearer {qbo_token}\r\nAccept: application/json\r\n"
        "Content-Type: application/json\r\n",
        b'{"Note": "half a',
    )
    _half_sent(server, f"POST /xero/identity/connect/token HTTP/1.1\r\n{form}", b"grant_type=")
    _half_sent(
        server, f"POST /qbo/oauth/oauth2/v1/tokens/bearer HTTP/1.1\r\n{form}", b"grant_type="
    )
    _half_sent(
        server,
        "POST /_sandbox/events HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\n",
        b'{"platform": "xe',
    )
    # A client that times out while a SLOW fault holds its GET, and is gone when it ends.
    sandbox.faults.add(
        kind=FaultKind.SLOW, platform="xero", endpoint="GET *", params={"delay": 0.3}
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(
            f"{server.urls()['api.xero.com']}/api.xro/2.0/Invoices",
            headers={
                "Authorization": f"Bearer {xero_token}",
                "xero-tenant-id": xero,
                "Accept": "application/json",
            },
            timeout=0.1,
        )
    # five API and token requests, and the slow GET (the control plane is not in the ledger)
    _wait_for(lambda: _requests(sandbox) == before + 6)
    time.sleep(0.5)  # the slow handler wakes up to a closed connection
    dropped = sandbox.ledger.entries(kind="request")[-6:]
    assert [e.status for e in dropped] == [None] * 6, "recorded as dropped: never answered"
    assert sandbox.ledger.count(kind="note_added") == 0
    assert [r.getMessage() for r in logged] == []


def test_a_real_failure_is_still_logged(
    server: SandboxServer,
    sandbox: Sandbox,
    logged: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug in the sandbox")

    monkeypatch.setattr(sandbox.xero.identity, "token", broken)
    reply = httpx.post(
        f"{server.urls()['identity.xero.com']}/connect/token", data={"grant_type": "x"}
    )
    assert reply.status_code == 500
    _wait_for(lambda: bool(logged))
    assert any(
        r.exc_info is not None and "a bug in the sandbox" in str(r.exc_info[1]) for r in logged
    )
