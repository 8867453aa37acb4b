"""Test support shared by every suite: the fixed clock and a sandbox factory."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from arsync.clock import Clock
from arsync.connectors.base import Connector, Limits, TokenSource
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.demo import sandbox_time
from arsync.domain import Invoice, InvoiceStatus, Page
from arsync.sandbox import Sandbox, SandboxSettings
from arsync.store import ConnectorRow, Store, open_store

#: Tests run on a fixed, frozen sandbox clock so that books and ages are the same every run.
TEST_NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def make_sandbox(**overrides: object) -> Sandbox:
    settings = SandboxSettings(start=TEST_NOW, frozen=True, seed=7)
    for key, value in overrides.items():
        if not hasattr(settings, key):
            raise TypeError(f"SandboxSettings has no setting {key!r}")
        setattr(settings, key, value)
    return Sandbox(settings)


_INPUT = re.compile(r"<input\b([^>]*)>")
_ATTR = re.compile(r'([\w-]+)(?:="([^"]*)"|=(\S+))?')


def form_fields(page: str, choice: str) -> tuple[dict[str, str], list[str]]:
    """(hidden fields, values of the radio buttons or check boxes named `choice`) of a form.

    How tests drive the sandbox's consent pages the way a browser submits them.
    """
    hidden: dict[str, str] = {}
    choices: list[str] = []
    for match in _INPUT.finditer(page):
        attrs = {
            m.group(1): html.unescape(m.group(2) or m.group(3) or "")
            for m in _ATTR.finditer(match.group(1))
        }
        if attrs.get("type") == "hidden":
            hidden[attrs["name"]] = attrs.get("value", "")
        elif attrs.get("type") in ("radio", "checkbox") and attrs.get("name") == choice:
            choices.append(attrs["value"])
    return hidden, choices


@dataclass
class ConnectorRun:
    """A connector pulling from a live sandbox, with the sandbox's ledger to count its calls."""

    sandbox: Sandbox
    platform: str
    tenant: str
    connector: Connector

    def calls(self) -> int:
        return self.sandbox.ledger.count(platform=self.platform, kind="request", tenant=self.tenant)

    def pull(
        self,
        state: dict[str, Any] | None,
        *,
        force_sweep: bool = False,
        local_open: Callable[[], set[str]] = set,
    ) -> list[Page]:
        return list(
            self.connector.pull(
                state,
                full=False,
                force_sweep=force_sweep,
                local_open=local_open,
                now=self.sandbox.clock.now(),
            )
        )


def clock_of(sandbox: Sandbox) -> Clock:
    """arsync's clock on the sandbox's (its waits move a frozen sandbox forward)."""
    return sandbox_time(sandbox)


def session_for(sandbox: Sandbox, platform: str, tokens: TokenSource, limits: Limits) -> ApiSession:
    """An API session as a connector's coordinator makes one, on the sandbox's clock."""
    clock = clock_of(sandbox)
    return ApiSession(
        platform=platform, tokens=tokens, governor=RateGovernor(limits, clock), clock=clock
    )


def store_for(sandbox: Sandbox, url: str) -> Store:
    """The store at `url`, stamping times from the sandbox's clock."""
    return open_store(url, clock_of(sandbox))


def connector_row(store: Store, name: str) -> ConnectorRow | None:
    with store.reading() as tx:
        return tx.connectors.by_name(name)


def invoice(ext: str | int, balance: str = "100.00", **changes: object) -> Invoice:
    """An invoice of 100.00 GBP to customer c1, issued 1 Oct and due 31 Oct 2026; open while
    anything is owed; `changes` replace any field."""
    owed = Decimal(balance)
    made = Invoice(
        id=str(ext),
        number=f"INV-{ext}",
        customer_id="c1",
        issue_date=date(2026, 10, 1),
        due_date=date(2026, 10, 31),
        currency="GBP",
        total=Decimal("100.00"),
        balance=owed,
        status=InvoiceStatus.OPEN if owed else InvoiceStatus.PAID,
        sent=False,
        updated_at=TEST_NOW,
    )
    return replace(made, **changes)  # type: ignore[arg-type]
