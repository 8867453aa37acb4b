"""The ledger: every externally visible effect of the sandbox, in order, for tests to assert on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arsync.sandbox.clock import SandboxClock

#: Kinds of ledger entries. `request` is written for every API call the sandbox answers.
KINDS = (
    "request",
    "email_sent",
    "note_added",
    "token_issued",
    "token_refreshed",
    "token_revoked",
    "token_rejected",
    "rate_limited",
    "fault_injected",
    "business_event",
    "replayed",
)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    at: datetime
    platform: str
    kind: str
    tenant: str | None = None
    endpoint: str | None = None
    status: int | None = None
    idempotency_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "platform": self.platform,
            "kind": self.kind,
            "tenant": self.tenant,
            "endpoint": self.endpoint,
            "status": self.status,
            "idempotency_key": self.idempotency_key,
            "detail": self.detail,
        }


class Ledger:
    """Append-only and thread-safe; filters make 'exactly once' and 'how many calls' one line."""

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._watchers: list[Callable[[LedgerEntry], None]] = []

    def watch(self, watcher: Callable[[LedgerEntry], None]) -> Callable[[], None]:
        """Call `watcher` with every entry as it is recorded (a request's before its answer
        leaves), e.g. to kill a client at a chosen request; returns what stops the watching."""
        with self._lock:
            self._watchers.append(watcher)

        def stop() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return stop

    def record(
        self,
        platform: str,
        kind: str,
        *,
        tenant: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
        idempotency_key: str | None = None,
        **detail: Any,
    ) -> LedgerEntry:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}")
        with self._lock:
            entry = LedgerEntry(
                seq=len(self._entries) + 1,
                at=self._clock.now(),
                platform=platform,
                kind=kind,
                tenant=tenant,
                endpoint=endpoint,
                status=status,
                idempotency_key=idempotency_key,
                detail=detail,
            )
            self._entries.append(entry)
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher(entry)
        return entry

    def entries(
        self,
        *,
        platform: str | None = None,
        kind: str | None = None,
        tenant: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
        idempotency_key: str | None = None,
        since_seq: int = 0,
    ) -> list[LedgerEntry]:
        with self._lock:
            snapshot: Iterable[LedgerEntry] = self._entries[since_seq:]
            return [
                e
                for e in snapshot
                if (platform is None or e.platform == platform)
                and (kind is None or e.kind == kind)
                and (tenant is None or e.tenant == tenant)
                and (endpoint is None or e.endpoint == endpoint)
                and (status is None or e.status == status)
                and (idempotency_key is None or e.idempotency_key == idempotency_key)
            ]

    def count(self, **filters: Any) -> int:
        return len(self.entries(**filters))

    def request_counts(self, platform: str | None = None) -> dict[str, int]:
        """API calls per endpoint template, e.g. {'GET /api.xro/2.0/Invoices': 12}."""
        counts: dict[str, int] = {}
        for e in self.entries(platform=platform, kind="request"):
            key = e.endpoint or "?"
            counts[key] = counts.get(key, 0) + 1
        return counts

    @property
    def last_seq(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
