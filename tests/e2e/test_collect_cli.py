"""The collecting commands as a person runs them: `arsync plan`, `why`, `hold`, `resume`,
`dispute`, `promise`, `settle`, `instalments` and `customer` through the command line (typer's
runner, in this process; `arsync sync` and `arsync plan` as processes where a company's time zone
is not known), on a home connected to a QuickBooks Online company of the loopback sandbox.

The sandbox's clock stands at Mon 23 Nov 2026 10:00 in Los Angeles (the company is in
California: its zone is America/Los_Angeles, its public holidays the US and California's, among
them Thu 26 and Fri 27 Nov). Each customer owes one invoice (USD):

    A  500.00 due Mon 2 Nov    due-soon (30 Oct) is due now
    B  800.00 due Mon 30 Nov   due-soon Fri 27 Nov is a holiday: Mon 30 Nov
    C 1000.00 due Tue 8 Dec    due-soon Sat 5 Dec: Mon 7 Dec
    D  300.00 due Tue 15 Dec   due-soon Sat 12 Dec: Mon 14 Dec
    E  600.00 due Mon 21 Dec   due-soon Fri 18 Dec
    F  450.00 due Fri 11 Dec   due-soon Tue 8 Dec, 08:00 in the customer's zone
    G  900.00 due Fri 18 Dec   due-soon Tue 15 Dec
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from arsync import commands
from arsync.cli import app
from arsync.config import load
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from tests.e2e.test_sync_e2e import SECRETS, approve, arsync, write_home
from tests.support import make_sandbox, store_for

#: who runs the commands (the paper trail says so)
PERSON = "pat"
#: Mon 23 Nov 2026 10:00 in Los Angeles
NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

INVOICES: dict[str, tuple[Decimal, date]] = {
    "A": (Decimal("500.00"), date(2026, 11, 26)),
    "B": (Decimal("800.00"), date(2026, 11, 30)),
    "C": (Decimal("1000.00"), date(2026, 12, 8)),
    "D": (Decimal("300.00"), date(2026, 12, 15)),
    "E": (Decimal("600.00"), date(2026, 12, 21)),
    "F": (Decimal("450.00"), date(2026, 12, 11)),
    "G": (Decimal("900.00"), date(2026, 12, 18)),
}


#: the command line in this process (typer's runner), as a person at the firm runs it
RUNNER = CliRunner(
    env={**SECRETS, "COLUMNS": "250", "NO_COLOR": "1", "LOGNAME": PERSON, "USER": PERSON}
)


def cli(home: Path, *args: str) -> Result:
    return RUNNER.invoke(app, [*args, "--home", str(home)])


def ok(home: Path, *args: str) -> str:
    """What the command printed, after it succeeded."""
    done = cli(home, *args)
    assert done.exit_code == 0, f"{args}: {done.output} {done.exception!r}"
    return done.stdout


def words(text: str) -> str:
    return " ".join(text.split())


def refused(home: Path, *args: str) -> str:
    """A command refused as bad input: exit code 2 and the reason on stderr, in words."""
    done = cli(home, *args)
    assert done.exit_code == 2, f"{args}: {done.exit_code} {done.output} {done.exception!r}"
    assert isinstance(done.exception, SystemExit), repr(done.exception)
    assert done.stdout == "", done.stdout
    return words(done.stderr)


@dataclass
class Books:
    sandbox: Sandbox
    home: Path
    store_url: str
    #: customer label -> its name, and -> its invoice's number and platform id
    names: dict[str, str]
    numbers: dict[str, str]
    ids: dict[str, str]

    def plan_json(self, *extra: str) -> dict[str, Any]:
        (connector,) = json.loads(ok(self.home, "plan", "--json", *extra))["connectors"]
        assert isinstance(connector, dict)
        return connector

    def decisions(self) -> dict[str, dict[str, Any]]:
        """Today's decision of each invoice (by customer label); a plan's own line as "plan"."""
        by_number = {n: label for label, n in self.numbers.items()}
        out: dict[str, dict[str, Any]] = {}
        for decision in self.plan_json()["decisions"]:
            key = "plan" if decision["plan"] is not None else by_number[decision["number"]]
            out[key] = decision
        return out

    def recorded(self) -> tuple[list[Any], ...]:
        """Everything a collecting command can record: holds, plans, settings, events."""
        store = store_for(self.sandbox, self.store_url)
        try:
            with store.reading() as tx:
                row = tx.connectors.by_name("books-qbo")
                assert row is not None
                return (
                    tx.holds.history(row.id),
                    tx.plans.active(row.id),
                    tx.settings.of(row.id),
                    tx.events.of(row.id),
                )
        finally:
            store.close()


def make_home(tmp: Path, server: SandboxServer) -> Path:
    """A home with one connector, books-qbo, linked to the sandbox's QuickBooks company."""
    home = tmp / "home"
    write_home(home, server.url, f"sqlite:///{tmp / 'arsync.db'}")
    (home / "connectors" / "books-xero.toml").unlink()
    echoed: list[str] = []
    commands.connect(
        load(home),
        "books-qbo",
        headless=True,
        open_browser=False,
        port=0,
        tenant=None,
        echo=echoed.append,
        read_line=lambda _prompt: approve(next(e for e in echoed if e.startswith("http"))),
        choose=lambda options: options[0],
    )
    return home


def sandbox_for_tests() -> Sandbox:
    sandbox = make_sandbox(
        customers=8,
        invoices=0,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    sandbox.clock.set(NOW)
    return sandbox


@pytest.fixture
def books(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Books]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    sandbox = sandbox_for_tests()
    realm = next(t.tenant_id for t in sandbox.tenants() if t.platform == "qbo")
    company = sandbox.qbo.company(realm)
    customers = sorted(company.customers.items())
    names: dict[str, str] = {}
    numbers: dict[str, str] = {}
    ids: dict[str, str] = {}
    for (label, (amount, due)), (ident, customer) in zip(INVOICES.items(), customers, strict=False):
        made = sandbox.event(
            "qbo",
            realm,
            {
                "type": "create_invoice",
                "customer": ident,
                "amount": str(amount),
                "due_date": due.isoformat(),
            },
        )
        names[label] = customer.display_name
        numbers[label] = made["doc_number"]
        ids[label] = made["invoice"]
    with SandboxServer(sandbox) as server:
        home = make_home(tmp_path, server)
        ok(home, "sync")
        yield Books(sandbox, home, f"sqlite:///{tmp_path / 'arsync.db'}", names, numbers, ids)


def at_eight(day: date, zone: str = "America/Los_Angeles") -> str:
    """08:00 on a day in a zone, as `plan --json` writes a moment (UTC)."""
    return datetime.combine(day, time(8), ZoneInfo(zone)).astimezone(UTC).isoformat()


def test_plan_shows_what_is_due_what_comes_next_and_forecasts(books: Books) -> None:
    names, numbers = books.names, books.numbers
    said = words(ok(books.home, "plan"))
    assert "books-qbo · Harbor & Pine Landscaping LLC · policy standard" in said
    assert "America/Los_Angeles" in said and "public holidays: US (CA)" in said
    assert "1 due, 6 scheduled" in said
    assert (
        f"due {names['A']}: invoice {numbers['A']}: friendly reminder due; balance 500.00 USD "
        "→ email, note"
    ) in said
    # B's reminder three days before its due date (Mon 30 Nov) would fall on the day after
    # Thanksgiving, and the next business day is the due date itself: never chased on the day
    # a bill falls due, so it does not happen, and the 30-day reminder comes next
    assert (
        f"scheduled {names['B']}: invoice {numbers['B']}: next, 30-day reminder on Wed 30 Dec "
        "08:00 America/Los_Angeles; balance 800.00 USD"
    ) in said

    today = books.decisions()
    due = today["A"]
    assert (due["status"], due["stage"], due["at"]) == ("due", "due-soon", NOW.isoformat())
    assert [(a["kind"], a["tone"], a["amount"]) for a in due["actions"]] == [
        ("email", "friendly", "500.00"),
        ("note", "friendly", "500.00"),
    ]
    # when each reminder three days before the due date may go: a business day that is not a
    # holiday and falls before the due date, from 08:00 in the customer's zone
    assert {label: (d["status"], d["at"]) for label, d in today.items() if label != "A"} == {
        "B": ("scheduled", at_eight(date(2026, 12, 30))),
        "C": ("scheduled", at_eight(date(2026, 12, 7))),
        "D": ("scheduled", at_eight(date(2026, 12, 14))),
        "E": ("scheduled", at_eight(date(2026, 12, 18))),
        "F": ("scheduled", at_eight(date(2026, 12, 8))),
        "G": ("scheduled", at_eight(date(2026, 12, 15))),
    }

    ahead = books.plan_json("--days", "30")["forecast"]
    assert [day["day"] for day in ahead] == [
        (date(2026, 11, 23) + timedelta(days=n)).isoformat() for n in range(30)
    ]
    by_invoice = {i: label for label, i in books.ids.items()}
    stages = {
        day["day"]: sorted({(by_invoice[a["invoice"]], a["stage"]) for a in day["actions"]})
        for day in ahead
        if day["actions"]
    }
    # by hand, as if every action happened and nobody paid: A's 30-day reminder (Sat 26 Dec,
    # so Mon 28 Dec) and B's (Wed 30 Dec) fall after these 30 days
    assert stages == {
        "2026-11-23": [("A", "due-soon")],
        "2026-12-07": [("C", "due-soon")],
        "2026-12-08": [("F", "due-soon")],
        "2026-12-14": [("D", "due-soon")],
        "2026-12-15": [("G", "due-soon")],
        "2026-12-18": [("E", "due-soon")],
    }

    why = words(ok(books.home, "why", numbers["A"]))
    assert f"invoice {numbers['A']} · books-qbo · policy standard" in why
    assert "due: invoice" in why and "friendly reminder due; balance 500.00 USD" in why
    assert "email (friendly tone)" in why and "note (friendly tone)" in why


def test_each_hold_shows_in_why_and_in_the_plan(books: Books) -> None:
    home, names, numbers = books.home, books.names, books.numbers

    said = ok(home, "hold", names["A"], "--until", "2026-12-10", "--reason", "on holiday")
    assert "paused until 10 Dec 2026" in said
    why = words(ok(home, "why", names["A"]))
    assert (
        f"held: invoice {numbers['A']}: customer paused until Thu 10 Dec 2026 by {PERSON} on "
        "Mon 23 Nov 2026: on holiday"
    ) in why
    assert f"pause until 10 Dec 2026 set 23 Nov 2026 by {PERSON}" in why and "(active)" in why

    assert "excluded" in ok(home, "hold", numbers["B"], "--reason", "query on the PO")
    why = words(ok(home, "why", numbers["B"]))
    assert f"held: invoice {numbers['B']}: excluded by {PERSON} on Mon 23 Nov 2026" in why
    assert books.decisions()["B"]["status"] == "held"
    assert "resumed" in ok(home, "resume", numbers["B"])
    why = words(ok(home, "why", numbers["B"]))
    assert f"scheduled: invoice {numbers['B']}" in why
    assert f"→ cleared 23 Nov 2026 by {PERSON}" in why

    assert "in dispute" in ok(home, "dispute", numbers["C"], "--reason", "wrong rate")
    why = words(ok(home, "why", numbers["C"]))
    assert f"in dispute (recorded by {PERSON} on Mon 23 Nov 2026: wrong rate)" in why

    # promised for Sun 20 Dec: not chased before the 3 days' grace are over
    assert "promise recorded" in ok(home, "promise", numbers["D"], "2026-12-20")
    why = words(ok(home, "why", numbers["D"]))
    assert "promised to pay on Sun 20 Dec 2026" in why
    assert "chased again after Wed 23 Dec 2026 if unpaid" in why

    # exactly the policy's 70% of the 900.00 owed
    assert "settlement recorded" in ok(home, "settle", numbers["G"], "630", "--by", "2026-12-31")
    why = words(ok(home, "why", numbers["G"]))
    assert "settlement of 630.00 USD agreed by Thu 31 Dec 2026" in why

    said = ok(home, "instalments", names["E"], "2026-12-01:250", "2027-01-01:350")
    assert "payment plan" in said
    why = words(ok(home, "why", names["E"]))
    assert f"held: invoice {numbers['E']}: on payment plan" in why
    assert "instalment 1 of 250.00 USD due Tue 1 Dec 2026" in why
    assert "01 Dec 250.00, 01 Jan 350.00" in why

    said = ok(home, "customer", names["F"], "--timezone", "America/New_York")
    assert "America/New_York" in said
    why = words(ok(home, "why", names["F"]))
    assert f"timezone set to America/New_York by {PERSON}" in why

    today = books.decisions()
    status = {label: d["status"] for label, d in today.items()}
    assert status == {
        "A": "held",
        "B": "scheduled",
        "C": "held",
        "D": "held",
        "E": "held",
        "plan": "held",
        "F": "scheduled",
        "G": "held",
    }
    assert "customer paused until Thu 10 Dec 2026" in today["A"]["reason"]
    assert today["B"]["at"] == at_eight(date(2026, 12, 30))  # resumed where it stood
    assert "in dispute" in today["C"]["reason"]
    assert "promised to pay on Sun 20 Dec 2026" in today["D"]["reason"]
    assert "on payment plan" in today["E"]["reason"]
    assert "instalment 1 of 250.00 USD" in today["plan"]["reason"]
    assert today["plan"]["amount"] == "250.00"
    assert "settlement of 630.00 USD" in today["G"]["reason"]
    # the customer's own zone: 08:00 in New York, 05:00 in the firm's Los Angeles
    assert today["F"]["at"] == at_eight(date(2026, 12, 8), "America/New_York")
    holds, plans, settings, _events = books.recorded()
    assert {h.set_by for h in holds} | {p.set_by for p in plans} == {PERSON}
    assert [(s.key, s.value, s.set_by) for s in settings] == [
        ("timezone", "America/New_York", PERSON)
    ]


def test_bad_input_exits_2_says_why_and_records_nothing(books: Books) -> None:
    home, names, numbers = books.home, books.names, books.numbers
    before = books.recorded()
    cases: list[tuple[list[str], str]] = [
        (["dispute", "9999", "--reason", "x"], "no invoice or customer '9999'"),
        (["why", "9999"], "no invoice or customer '9999'"),
        (["promise", numbers["A"], "2026-11-22"], "DATE: 2026-11-22 is in the past"),
        (["hold", names["A"], "--until", "2026-11-01"], "--until: 2026-11-01 is in the past"),
        (["settle", numbers["A"], "500.01"], "500.01 is above the balance of 500.00 USD"),
        (["settle", numbers["A"], "349.99"], "below the 70% of the balance (350.00 USD)"),
        (
            ["instalments", names["A"], "2026-12-01:400", "2027-01-01:100.01"],
            "the instalments add up to 500.01 USD, above the 500.00 owed",
        ),
        (
            ["customer", names["A"], "--timezone", "Mars/Olympus"],
            '--timezone: unknown time zone "Mars/Olympus"',
        ),
        (["resume", numbers["A"]], f"invoice {numbers['A']} is not paused, excluded or in dispute"),
        (["resume", names["A"]], f"{names['A']} is not paused, excluded or in dispute"),
        # and a few more a person may try
        (["hold", numbers["A"], "--until", "2026-12-01"], "--until is for pausing a customer"),
        (["promise", numbers["A"], "2027-12-01"], "2027-12-01 is more than a year away"),
        (["promise", numbers["A"], "1 Dec"], "DATE: '1 Dec' is not a date (YYYY-MM-DD)"),
        (["settle", numbers["A"], "400.001"], "at most two decimal places"),
        (
            ["instalments", names["A"], "2026-12-01:400"],
            "the instalments add up to 400.00 USD, below the 500.00 owed",
        ),
        (["instalments", numbers["A"], "2026-12-01:500"], "this needs a customer"),
        (["dispute", numbers["A"]], "--reason: say what the customer disputes"),
    ]
    for args, message in cases:
        said = refused(home, *args)
        assert said.startswith("error: ") and message in said, (args, said)
    assert books.recorded() == before


def test_a_company_whose_zone_is_not_known_is_not_planned_until_its_file_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    sandbox = sandbox_for_tests()
    realm = next(t.tenant_id for t in sandbox.tenants() if t.platform == "qbo")
    company = sandbox.qbo.company(realm)
    with sandbox.lock:
        # a company in Canada: the sandbox gives it its Toronto office, in Ontario, a province
        # that keeps more than one clock, and QuickBooks says no time zone of its own
        company.country = "CA"
    with SandboxServer(sandbox) as server:
        home = make_home(tmp_path, server)
        assert arsync(home, "sync").returncode == 0
        planned = arsync(home, "plan")
        assert planned.returncode == 2, planned.stdout + planned.stderr
        said = words(planned.stderr)
        assert "connectors/books-qbo.toml: timezone: arsync will not plan for" in said
        assert "its address (CA, ON) spans more than one" in said
        assert "Set it in connectors/books-qbo.toml" in said
        settings = home / "connectors" / "books-qbo.toml"
        text = settings.read_text()
        settings.write_text(text.replace("[oauth]", 'timezone = "America/Toronto"\n[oauth]', 1))
        again = arsync(home, "plan", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["connectors"][0]["timezone"] == "America/Toronto"


def test_a_bookkeeper_pauses_a_customer_from_inside_quickbooks(books: Books) -> None:
    """A "Do not chase" customer type, then a marker in the Notes: each reaches the plan through
    `arsync sync` as a hold set in the ledger, which `resume` refuses, and each ends at the
    sync after the bookkeeper takes it away."""
    sandbox, home, names = books.sandbox, books.home, books.names
    realm = next(t.tenant_id for t in sandbox.tenants() if t.platform == "qbo")
    company = sandbox.qbo.company(realm)
    a = next(i for i, c in company.customers.items() if c.display_name == names["A"])
    kind = sandbox.event("qbo", realm, {"type": "customer_type", "name": "Do not chase"})
    sandbox.event(
        "qbo",
        realm,
        {"type": "customer_edit", "customer": a, "customer_type": kind["customer_type"]},
    )
    ok(home, "sync")
    held = books.decisions()["A"]
    assert held["status"] == "held" and held["actions"] == []
    assert "customer paused in the ledger by the bookkeeper, in QuickBooks Online" in held["reason"]
    assert 'customer type "Do not chase"' in held["reason"]
    said = refused(home, "resume", names["A"])
    assert "held inside QuickBooks Online" in said and "clear it there" in said
    # the type taken away and a marker written in the Notes instead
    sandbox.event(
        "qbo",
        realm,
        {"type": "customer_edit", "customer": a, "customer_type": None, "notes": "#NOCHASE: ill"},
    )
    ok(home, "sync")
    assert 'Notes say "#nochase"' in books.decisions()["A"]["reason"]
    sandbox.event("qbo", realm, {"type": "customer_edit", "customer": a, "notes": ""})
    ok(home, "sync")
    assert books.decisions()["A"]["status"] == "due"
    why = words(ok(home, "why", names["A"]))
    assert "pause cleared by arsync (the policy): no longer set in the ledger" in why
