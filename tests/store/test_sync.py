"""sync.py in-process, on SQLite and PostgreSQL, with a fake platform: how every way a sync can
end is reported and recorded, and that one connector's failure never stops another's."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from arsync.clock import FrozenClock
from arsync.connectors.base import Limits, Link, StaticTokens, register
from arsync.connectors.http import ApiSession
from arsync.domain import CompanyInfo, Page
from arsync.errors import DataError, Parked, TransientError
from arsync.logs import configure
from arsync.runtime import Coordinator
from arsync.store import ConnectorState, RunOutcome, Store, open_store
from arsync.sync import FAILED, OK, PARKED, SKIPPED, sync_all, sync_connector
from tests.support import invoice

T = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LIMITS = Limits(per_minute=10_000, per_second=None, concurrent=5, per_day=None)


@dataclass
class Script:
    """What the fake platform does on its next pull: pages to yield, then maybe a failure."""

    pages: int = 3
    fail: BaseException | None = None
    pulls: int = 0
    seen_state: list[Mapping[str, Any] | None] = field(default_factory=list)


SCRIPTS: dict[str, Script] = {}


class FakeConnector:
    """A platform whose pulls follow `SCRIPTS[link.name]`."""

    platform: ClassVar[str] = "fake"

    def __init__(self, link: Link, session: ApiSession) -> None:
        self.link = link
        self.session = session

    def company(self) -> CompanyInfo:
        return CompanyInfo(f"{self.link.name} Ltd", "GBP", "GB")

    def pull(
        self,
        state: Mapping[str, Any] | None,
        *,
        full: bool,
        force_sweep: bool,
        local_open: Callable[[], set[str]],
        now: datetime,
    ) -> Iterator[Page]:
        script = SCRIPTS[self.link.name]
        script.pulls += 1
        script.seen_state.append(state)
        start = int(state["next"]) if state else 0
        for n in range(start, start + script.pages):
            company = self.company() if n == 0 else None
            yield Page("invoices", [invoice(n)], {"next": n + 1}, company=company)
        if script.fail is not None:
            raise script.fail


register("fake", FakeConnector)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = open_store(db_url, FrozenClock(T))
    yield made
    made.close()


def coordinator(store: Store, name: str, script: Script, limits: Limits = LIMITS) -> Coordinator:
    SCRIPTS[name] = script
    with store.transaction() as tx:
        row, _ = tx.connectors.link(name, "fake", f"tenant-{name}", CompanyInfo(name), at=T)
    link = Link(name, "fake", f"tenant-{name}", "http://fake.invalid", limits)
    return Coordinator(name, row.id, link, StaticTokens("t"), store)


def runs(store: Store, c: Coordinator) -> list[tuple[RunOutcome, int]]:
    with store.reading() as tx:
        return [(r.outcome, r.pages) for r in tx.runs.of(c.connector_id)]


def test_a_sync_that_ends_well_is_ok_with_its_company_stored(store: Store) -> None:
    c = coordinator(store, "good", Script(pages=3))
    report = sync_connector(store, c)
    assert (report.outcome, report.exit_code, report.pages, report.created) == (OK, 0, 3, 3)
    assert runs(store, c) == [(RunOutcome.OK, 3)]
    with store.reading() as tx:
        row = tx.connectors.get(c.connector_id)
        assert row.company_name == "good Ltd" and row.country == "GB"
        assert row.last_sync_ok_at == T and row.last_error is None


def test_a_crash_mid_sync_is_a_failure_recorded_and_logged_once(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(fmt="json")  # as under systemd: one JSON object a line, tracebacks included
    c = coordinator(store, "crashing", Script(pages=2, fail=KeyError("Balance")))
    report = sync_connector(store, c)

    assert report.outcome is FAILED and report.exit_code == 1
    assert "unexpected KeyError" in report.message and "traceback is in the log" in report.message
    # the pages before the crash are kept with their cursor; the run is failed, not ok
    assert runs(store, c) == [(RunOutcome.FAILED, 2)]
    with store.reading() as tx:
        row = tx.connectors.get(c.connector_id)
        assert row.last_sync_ok_at is None  # never a fresh "last good sync" after a crash
        assert row.last_error is not None and "KeyError" in row.last_error
        assert tx.records.cursor(c.connector_id) == {"next": 2}
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    crashes = [line for line in lines if "Traceback" in line.get("exception", "")]
    assert len(crashes) == 1 and "KeyError: 'Balance'" in crashes[0]["exception"]
    assert crashes[0]["connector"] == "crashing"

    # The next run resumes after the last committed page.
    SCRIPTS["crashing"].fail = None
    again = sync_connector(store, c)
    assert again.outcome is OK and SCRIPTS["crashing"].seen_state[-1] == {"next": 2}


def test_platform_failures_are_failed_runs_with_their_exit_codes(store: Store) -> None:
    c = coordinator(store, "flaky", Script(pages=1, fail=TransientError("the platform failed")))
    report = sync_connector(store, c)
    assert (report.outcome, report.exit_code) == (FAILED, 4)
    SCRIPTS["flaky"].fail = DataError("an unreadable reply")
    assert sync_connector(store, c).exit_code == 6
    assert [o for o, _ in runs(store, c)] == [RunOutcome.FAILED, RunOutcome.FAILED]


def test_a_parked_connector_reports_parked_on_every_run_until_then(store: Store) -> None:
    c = coordinator(store, "limited", Script(pages=1, fail=Parked("day limit", retry_after=7200)))
    first = sync_connector(store, c)
    assert (first.outcome, first.exit_code) == (PARKED, 4)
    assert "parked until 2026-11-23 17:00 UTC" in first.message
    pulls = SCRIPTS["limited"].pulls
    second = sync_connector(store, c)
    assert (second.outcome, second.exit_code) == (PARKED, 4)  # not 0: nothing was synced
    assert "parked until 2026-11-23 17:00 UTC" in second.message
    assert SCRIPTS["limited"].pulls == pulls  # and the platform was not asked
    assert runs(store, c) == [(RunOutcome.PARKED, 1)]


def test_a_sync_another_process_is_running_is_skipped_as_busy(store: Store) -> None:
    c = coordinator(store, "busy", Script(pages=1))
    with store.exclusive("sync:busy"):
        report = sync_connector(store, c)
    assert (report.outcome, report.exit_code) == (SKIPPED, 4)
    assert "another sync of this connector is running" in report.message
    assert runs(store, c) == []


def test_a_connector_needing_reconnection_is_skipped_with_exit_3(store: Store) -> None:
    c = coordinator(store, "dead", Script(pages=1))
    with store.transaction() as tx:
        tx.connectors.mark_reconnect_needed(c.connector_id, "invalid_grant")
    report = sync_connector(store, c)
    assert (report.outcome, report.exit_code) == (SKIPPED, 3)
    assert "arsync connect dead" in report.message
    with store.reading() as tx:
        assert tx.connectors.get(c.connector_id).status is ConnectorState.RECONNECT_NEEDED


def test_one_connectors_crash_keeps_every_others_report(store: Store) -> None:
    coordinators = [
        coordinator(store, "first", Script(pages=2)),
        coordinator(store, "boom", Script(pages=1, fail=RuntimeError("bug"))),
        coordinator(store, "last", Script(pages=2)),
    ]
    reports = sync_all(store, coordinators, workers=3)
    assert [(r.name, r.outcome) for r in reports] == [
        ("first", OK),
        ("boom", FAILED),
        ("last", OK),
    ]


def test_a_store_that_fails_under_a_sync_is_reported_not_raised(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arsync.errors import StoreDamaged

    c = coordinator(store, "doomed", Script(pages=1))

    @contextlib.contextmanager
    def broken() -> Iterator[object]:
        raise StoreDamaged("the store x is damaged (database disk image is malformed)")
        yield  # pragma: no cover

    monkeypatch.setattr(store, "reading", broken)
    report = sync_connector(store, c)
    assert (report.outcome, report.exit_code) == (FAILED, 6)
    assert "damaged" in report.message


def test_an_interrupted_sync_is_recorded_as_failed_then_interrupts(store: Store) -> None:
    c = coordinator(store, "stopped", Script(pages=1, fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        sync_connector(store, c)
    assert runs(store, c) == [(RunOutcome.FAILED, 1)]
    with store.reading() as tx:
        assert "interrupted" in (tx.connectors.get(c.connector_id).last_error or "")


def test_the_sweep_schedule_reads_the_injected_clock(store: Store) -> None:
    c = coordinator(store, "timed", Script(pages=1))
    sync_connector(store, c)
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(timedelta(days=400))  # whatever the machine's date, arsync's is this
    seen: list[datetime] = []
    original = FakeConnector.pull

    def spy(self: FakeConnector, state: Any, **kwargs: Any) -> Iterator[Page]:
        seen.append(kwargs["now"])
        return original(self, state, **kwargs)

    c.connector.pull = spy.__get__(c.connector)  # type: ignore[method-assign]
    sync_connector(store, c)
    assert seen == [T + timedelta(days=400)]


def test_the_days_calls_outlive_the_coordinator(store: Store) -> None:
    """A restart (a new process, a new coordinator) starts from the calls already made today:
    the governor's usage is written to the store and read back."""
    limits = Limits(per_minute=1000, per_second=None, concurrent=5, per_day=5)
    first = coordinator(store, "counted", Script(pages=0), limits)
    for _ in range(5):
        started = first.governor.acquire()
        first.governor.release(started=started)
    first.close()
    with store.reading() as tx:
        assert sum(n for _, n in tx.usage.since(first.connector_id, T - timedelta(days=1))) == 5

    restarted = coordinator(store, "counted", Script(pages=0), limits)
    with pytest.raises(Parked):  # the day's five are spent: a long wait, so it parks
        restarted.governor.acquire()
