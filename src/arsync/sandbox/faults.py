"""The fault plan: scripted or seeded-random faults per platform and per endpoint."""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """What a matched request suffers. Each platform renders a fault in its own wire shape."""

    RATE_LIMIT = "rate_limit"  # 429 as for the per-minute limit
    DAY_LIMIT = "day_limit"  # 429 with a wait of many hours (Xero day limit)
    XML_THROTTLE = "xml_throttle"  # QBO 429 with an XML body although JSON was asked for
    SERVER_ERROR = "server_error"  # params: status (500 default, or 502/503/504)
    SLOW = "slow"  # params: delay seconds, then answer normally (past a client's timeout)
    DROP = "drop"  # close the connection without answering; nothing performed
    LOST_REPLY = "lost_reply"  # perform the request, then close the connection unanswered
    EXPIRED_TOKEN = "expired_token"  # 401 as for an expired access token
    REVOKED_REFRESH = "revoked_refresh"  # token endpoint: invalid_grant, and the grant dies
    STALE_SYNCTOKEN = "stale_synctoken"  # QBO write: fault 5010 as if someone edited first


@dataclass
class FaultRule:
    """One line of the plan.

    `platform` is "qbo", "xero" or "*"; `endpoint` is a glob over the endpoint template the
    sandbox logs in its ledger (e.g. "GET /api.xro/2.0/Invoices", "* */send", "POST /oauth2/*").
    `skip` lets the first N matches pass; `times` is how many matches fault (None: every one);
    `probability` makes a seeded-random plan (1.0: always).
    """

    kind: FaultKind
    platform: str = "*"
    endpoint: str = "*"
    tenant: str | None = None
    times: int | None = 1
    skip: int = 0
    probability: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    seen: int = 0
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "platform": self.platform,
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "times": self.times,
            "skip": self.skip,
            "probability": self.probability,
            "params": self.params,
            "seen": self.seen,
            "fired": self.fired,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        known = {"kind", "platform", "endpoint", "tenant", "times", "skip", "probability", "params"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        try:
            kind = FaultKind(data["kind"])
        except (KeyError, ValueError) as err:
            choices = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"fault rule needs kind, one of: {choices}") from err
        try:
            probability = float(data.get("probability", 1.0))
            times = data.get("times", 1)
            times = None if times is None else int(times)
            skip = int(data.get("skip", 0))
        except (TypeError, ValueError) as err:
            raise ValueError(
                "probability is a number; times (or null) and skip whole numbers"
            ) from err
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if (times is not None and times < 0) or skip < 0:
            raise ValueError("times and skip cannot be negative")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        return cls(
            kind=kind,
            platform=str(data.get("platform", "*")),
            endpoint=str(data.get("endpoint", "*")),
            tenant=data.get("tenant"),
            times=times,
            skip=skip,
            probability=probability,
            params=dict(params),
        )

    def matches(self, platform: str, endpoint: str, tenant: str | None) -> bool:
        if self.platform not in ("*", platform):
            return False
        if self.tenant is not None and self.tenant != tenant:
            return False
        return fnmatch.fnmatchcase(endpoint, self.endpoint)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultPlan:
    """Rules are tried in order; the first one that fires wins. Seeded, so a run replays."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def add(self, rule: FaultRule | None = None, /, **kwargs: Any) -> FaultRule:
        if rule is None:
            kind = kwargs.pop("kind")
            rule = FaultRule(kind=FaultKind(kind), **kwargs)
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def draw(
        self,
        platform: str,
        endpoint: str,
        tenant: str | None = None,
        kinds: frozenset[FaultKind] | None = None,
    ) -> FaultRule | None:
        """Consume and return the first rule that fires for this request, if any.

        `kinds` narrows the draw to rules a given stage of request handling can apply (the token
        endpoint applies REVOKED_REFRESH itself, a write applies STALE_SYNCTOKEN itself).
        """
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(platform, endpoint, tenant):
                    continue
                if kinds is not None and rule.kind not in kinds:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
            return None


#: Faults applied around any request by the platform middleware; the others are semantic.
TRANSPORT_FAULTS = frozenset(
    {
        FaultKind.RATE_LIMIT,
        FaultKind.DAY_LIMIT,
        FaultKind.XML_THROTTLE,
        FaultKind.SERVER_ERROR,
        FaultKind.SLOW,
        FaultKind.DROP,
        FaultKind.LOST_REPLY,
        FaultKind.EXPIRED_TOKEN,
    }
)
