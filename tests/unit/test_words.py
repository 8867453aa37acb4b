"""The words people read: notes, letters and call scripts from templates, and the start-up check."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.domain import Invoice, InvoiceStatus
from arsync.errors import ConfigError
from arsync.escalation.policy import LatePayment, Policy, Tone, builtin_policies, builtin_text
from arsync.writeback.words import (
    BUILTIN_DIR,
    QBO_NOTE_LIMIT,
    XERO_NOTE_LIMIT,
    CallFacts,
    CallOutcome,
    Event,
    LetterFacts,
    NoteFacts,
    TemplateProblem,
    Words,
    check,
    sample_notes,
    search_path,
    template_names,
    utf16_len,
)

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 12, 2)
MARKER = "k7q2m4xa"


@pytest.fixture(scope="module")
def words() -> Words:
    return Words.load([BUILTIN_DIR])


def note(**changes: object) -> NoteFacts:
    facts = NoteFacts(
        today=TODAY,
        firm="Harbor Plumbing",
        customer="Acme Ltd",
        invoice="1042",
        stage="30-day reminder",
        tone=Tone.POLITE,
        event=Event.EMAILED,
        balance="1,200.00 USD",
        next_step="call",
        next_day=date(2027, 1, 4),
        to="accounts@harbor.example",
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def invoice(number: str, due: date, balance: str, currency: str = "GBP") -> Invoice:
    return Invoice(
        id=f"id-{number}",
        number=number,
        customer_id="c1",
        issue_date=date(due.year, due.month, 1),
        due_date=due,
        currency=currency,
        total=Decimal(balance) + 100,
        balance=Decimal(balance),
        status=InvoiceStatus.OPEN,
        sent=True,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


UK = LatePayment.model_validate(
    {"regime": "uk", "base_rates": [{"from": date(2025, 8, 7), "rate": 4.0}]}
)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


# -- notes ---------------------------------------------------------------------------------------


def test_a_note_is_one_dated_line_with_the_marker_appended(words: Words) -> None:
    assert words.note(note(), MARKER) == (
        "2 Dec 2026 · 30-day reminder emailed to accounts@harbor.example · balance "
        "1,200.00 USD · next: call on 4 Jan · ref k7q2m4xa"
    )


@pytest.mark.parametrize("tone", list(Tone))
def test_every_tone_has_a_note_and_every_event_says_what_happened(words: Words, tone: Tone) -> None:
    said = {}
    for facts in sample_notes("friendly reminder", None):
        text = words.note(dataclasses.replace(facts, tone=tone), MARKER)
        assert "\n" not in text and "  " not in text
        assert text.startswith("28 Sep 2026 · ")
        assert text.endswith(" · ref k7q2m4xa")
        said[(facts.event, facts.outcome)] = text
    assert "emailed to accounts.payable@northwind-traders.example" in said[(Event.EMAILED, None)]
    assert "not emailed: no email address on file" in said[(Event.NOT_EMAILED, None)]
    assert "call task opened for +44 20 7946 0000" in said[(Event.CALL, None)]
    outcome = Event.CALL_OUTCOME
    assert "call: reached Bartholomew" in said[(outcome, CallOutcome.REACHED)]
    assert "call: no answer" in said[(outcome, CallOutcome.NO_ANSWER)]
    assert "promised 9,999,999,999.99 USD by 28 Dec 2026" in said[(outcome, CallOutcome.PROMISED)]
    assert "call: disputed by Bartholomew" in said[(outcome, CallOutcome.DISPUTED)]
    assert "payment plan agreed with Bartholomew" in said[(outcome, CallOutcome.PLAN)]
    assert "letter sent to accounts.payable@" in said[(Event.LETTER, None)]
    assert "handed over to Atlantic Commercial Collections Ltd" in said[(Event.HANDOVER, None)]
    assert "promise to pay by 28 Dec 2026 not kept" in said[(Event.PROMISE_BROKEN, None)]
    assert "12 instalments of 9,999,999,999.99 USD from 28 Dec 2026" in said[(Event.PLAN, None)]
    assert "accepted in full settlement" in said[(Event.SETTLEMENT, None)]
    assert "chase paused until 28 Dec 2026" in said[(Event.PAUSED, None)]
    assert "balance 9,999,999,999.99 USD (was 9,999,999,999.99 USD)" in said[(Event.DISPUTE, None)]
    assert "next:" not in said[(Event.RESUMED, None)]


def test_a_note_says_the_balance_planned_only_when_it_changed_and_the_year_when_far(
    words: Words,
) -> None:
    text = words.note(note(planned_balance="1,500.00 USD", next_day=date(2027, 11, 30)), MARKER)
    assert "balance 1,200.00 USD (was 1,500.00 USD) · next: call on 30 Nov 2027" in text
    assert "(was" not in words.note(note(), MARKER)


def test_a_note_missing_what_its_event_needs_is_refused_when_made() -> None:
    with pytest.raises(ValueError, match="a letter note needs to, subject"):
        note(event=Event.LETTER, to=None)
    with pytest.raises(ValueError, match="needs by"):
        note(event=Event.CALL_OUTCOME, outcome=CallOutcome.PROMISED)


def test_the_marker_survives_a_template_that_tries_to_drop_it_and_a_limit(
    tmp_path: Path, words: Words
) -> None:
    own = write(tmp_path / "own", "note_polite.txt.j2", "{{ 'x' * 400 }}\n\n{# no marker #}")
    mine = Words.load([own, BUILTIN_DIR])
    text = mine.note(note(), MARKER, limit_utf16=XERO_NOTE_LIMIT)
    assert text.endswith("x… · ref k7q2m4xa")
    assert utf16_len(text) == XERO_NOTE_LIMIT
    # an emoji is two UTF-16 units: a cut never splits one
    emoji = write(tmp_path / "emoji", "note_polite.txt.j2", "{{ '😀' * 200 }}")
    text = Words.load([emoji]).note(note(), MARKER, limit_utf16=XERO_NOTE_LIMIT)
    assert utf16_len(text) <= XERO_NOTE_LIMIT and text.endswith("😀… · ref k7q2m4xa")
    with pytest.raises(ValueError, match="one word"):
        words.note(note(), "two words")


def test_utf16_length_counts_what_xero_may_count() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("£·€") == 3
    assert utf16_len("😀") == 2


# -- letters and call scripts --------------------------------------------------------------------


def test_a_firm_letter_lists_every_overdue_invoice_with_the_acts_interest(words: Words) -> None:
    today = date(2026, 8, 24)
    facts = LetterFacts.build(
        today=today,
        tone=Tone.FIRM,
        firm="Harbor & Finch Ltd",
        firm_email="accounts@harbor.example",
        firm_phone="020 7946 0000",
        customer="Acme <Trading> Ltd",
        customer_email="ap@acme.example",
        invoices=[
            invoice("1043", date(2026, 8, 1), "10000.00"),
            invoice("1042", date(2026, 7, 10), "999.99"),
            invoice("1050", date(2026, 9, 30), "500.00"),  # not yet due: not on the letter
            invoice("1001", date(2026, 1, 31), "0.00"),  # paid
        ],
        late_payment=UK,
        reference=MARKER,
        stage="60-day call and reminder",
    )
    assert [i.number for i in facts.invoices] == ["1042", "1043"]
    assert facts.owed == "10,999.99 GBP"
    first = facts.invoices[0].claim
    assert first is not None and first.interest == Decimal("14.79")
    # 10,000.00 late from 2 Aug to 24 Aug: 23 days at 12% (the rate of 30 June, the Act's)
    assert facts.invoices[1].claim is not None
    assert facts.invoices[1].claim.interest == Decimal("75.62")
    assert facts.interest == "90.41 GBP"
    assert facts.compensation == "140.00 GBP"  # 40 for the small debt, 100 for 10,000
    assert facts.claimed == "11,230.40 GBP"
    letter = words.letter(facts)
    assert letter.subject == "Overdue account: 10,999.99 GBP unpaid"
    assert "Dear Acme <Trading> Ltd," in letter.text
    assert (
        "Invoice 1042: Statutory interest at 12.00% a year (Bank of England base rate 4.00% on "
        "30 Jun 2026 + 8%) for 45 days: 14.79 GBP; fixed compensation 40.00 GBP (Late Payment "
        "of Commercial Debts (Interest) Act 1998)." in letter.text
    )
    assert "the amount now due is 11,230.40 GBP" in letter.text
    assert "Reference: k7q2m4xa" in letter.text
    # HTML escapes what came from the ledger; the plain text does not
    assert "Dear Acme &lt;Trading&gt; Ltd," in letter.html
    assert "Harbor &amp; Finch Ltd" in letter.html
    assert "<title>Overdue account: 10,999.99 GBP unpaid</title>" in letter.html
    assert "<td>1042</td>" in letter.html


@pytest.mark.parametrize("tone", list(Tone))
def test_every_tone_has_a_letter_and_a_call_script(words: Words, tone: Tone) -> None:
    facts = LetterFacts.build(
        today=TODAY,
        tone=tone,
        firm="Harbor Plumbing",
        firm_email=None,
        firm_phone=None,
        customer="Acme Ltd",
        customer_email="ap@acme.example",
        invoices=[invoice("1042", date(2026, 10, 31), "1200.00", "USD")],
        late_payment=UK,  # in pounds: nothing claimed on a dollar invoice
        reference=MARKER,
    )
    assert facts.interest is None and facts.claimed is None and facts.law is None
    letter = words.letter(facts)
    assert letter.subject and "\n" not in letter.subject
    assert "1,200.00 USD" in letter.text and "32 days overdue" in letter.text
    assert "Statutory interest" not in letter.text
    assert letter.html.startswith("<!DOCTYPE html>")
    script = words.call_script(
        CallFacts.build(
            today=TODAY,
            tone=tone,
            firm="Harbor Plumbing",
            customer="Acme Ltd",
            phone=None,
            invoices=[invoice("1042", date(2026, 10, 31), "1200.00", "USD")],
            history=["2 Nov 2026 · 30-day reminder emailed to ap@acme.example · ref aaaa"],
        )
    )
    assert script.startswith("Call Acme Ltd (no phone number on file")
    assert "Owed: 1,200.00 USD; the oldest invoice is 32 days overdue." in script
    assert "  - 2 Nov 2026 · 30-day reminder emailed" in script
    assert "--outcome promised --on YYYY-MM-DD" in script


def test_a_reminder_before_the_due_date_lists_the_open_invoices(words: Words) -> None:
    facts = LetterFacts.build(
        today=TODAY,
        tone=Tone.FRIENDLY,
        firm="Harbor Plumbing",
        firm_email="accounts@harbor.example",
        firm_phone=None,
        customer="Acme Ltd",
        customer_email="ap@acme.example",
        invoices=[invoice("1042", date(2026, 12, 5), "300.00", "USD")],
        late_payment=None,
        reference=MARKER,
    )
    assert [i.number for i in facts.invoices] == ["1042"]
    assert (
        "Invoice 1042, issued 1 Dec 2026, due 5 Dec 2026: 300.00 USD of 400.00 USD unpaid, "
        "due in 3 days" in words.letter(facts).text
    )


# -- a firm's own templates -----------------------------------------------------------------------


def test_the_search_path_connector_before_policy_before_config_before_built_in(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    base = home / "config" / "templates"
    write(base, "note_polite.txt.j2", "config says {{ invoice }}")
    write(base, "note_firm.txt.j2", "config says firm {{ invoice }}")
    write(base / "kind", "note_polite.txt.j2", "policy says {{ invoice }}")
    write(base / "kind", "note_firm.txt.j2", "policy says firm {{ invoice }}")
    write(base / "connectors" / "acme", "note_polite.txt.j2", "connector says {{ invoice }}")
    policy = builtin_policies()["gentle"].model_copy(update={"templates": "kind"})
    dirs = search_path(home, connector="acme", policy=policy)
    assert dirs == [base / "connectors" / "acme", base / "kind", base, BUILTIN_DIR]
    words = Words.load(dirs, home=home)
    assert words.note(note(), MARKER) == "connector says 1042 · ref k7q2m4xa"
    assert words.note(note(tone=Tone.FIRM), MARKER) == "policy says firm 1042 · ref k7q2m4xa"
    assert words.note(note(tone=Tone.FINAL), MARKER).startswith("2 Dec 2026 · 30-day")
    assert words.where("note_firm.txt.j2") == "config/templates/kind/note_firm.txt.j2"
    assert words.where("note_final.txt.j2") == "arsync/writeback/templates/note_final.txt.j2"
    # another connector, no policy directory: config/templates/, then the built-in ones
    other = Words.load(search_path(home, connector="beta"), home=home)
    assert other.note(note(), MARKER) == "config says 1042 · ref k7q2m4xa"
    assert search_path(tmp_path / "empty") == [BUILTIN_DIR]
    missing = policy.model_copy(update={"templates": "nowhere"})
    with pytest.raises(ConfigError, match="config/templates/nowhere is not a directory"):
        search_path(home, policy=missing)


def test_an_unknown_field_in_a_firms_template_is_an_error_not_a_gap(tmp_path: Path) -> None:
    own = write(
        tmp_path / "own",
        "note_polite.txt.j2",
        "{{ today | day }}\n{% if event == 'emailed' %}sent to {{ customer_email }}{% endif %}",
    )
    words = Words.load([own, BUILTIN_DIR])
    with pytest.raises(TemplateProblem) as caught:
        words.note(note(), MARKER)
    assert str(caught.value) == (
        f"{own}/note_polite.txt.j2: note_polite.txt.j2: line 2: unknown field: "
        "'customer_email' is undefined"
    )
    # the check finds it even in a branch no sample takes
    branch = write(
        tmp_path / "branch", "note_firm.txt.j2", "{% if event == 'x' %}{{ nope }}{% endif %}."
    )
    found = check(Words.load([branch, BUILTIN_DIR]), note_limit_utf16=None)
    assert found == [
        f"{branch}/note_firm.txt.j2: note_firm.txt.j2: line 1: unknown field: 'nope' is undefined"
    ]


def test_the_sandbox_refuses_a_template_reaching_into_python(tmp_path: Path) -> None:
    own = write(tmp_path / "own", "note_polite.txt.j2", "{{ today.__class__.__mro__ }}")
    with pytest.raises(TemplateProblem, match=r"note_polite\.txt\.j2: line 1: "):
        Words.load([own, BUILTIN_DIR]).note(note(), MARKER)


def test_the_check_names_file_template_and_line_of_each_problem(tmp_path: Path) -> None:
    own = tmp_path / "own"
    write(own, "note_friendly.txt.j2", "{{ today | day }} · 🔔" * 30)
    write(own, "call_final.txt.j2", "Call {{ customer }}\n{% if phone %}\n")
    write(own, "letter_polite.txt.j2", "Dear {{ customer }}")
    write(own, "letter_firm.html.j2", "{% include 'missing.html.j2' %}")
    found = check(Words.load([own, BUILTIN_DIR]), note_limit_utf16=XERO_NOTE_LIMIT)
    assert found[:3] == [
        f"{own}/note_friendly.txt.j2: note_friendly.txt.j2: a note of 513 UTF-16 units with "
        "the longest values (emailed), over the limit of 250",
        f"{own}/letter_polite.txt.j2: letter_polite.txt.j2: sets no subject "
        '({% set subject = "…" %} at the top)',
        f"{own}/letter_firm.html.j2: letter_firm.html.j2: uses missing.html.j2, not found in "
        f"{own}, arsync/writeback/templates",
    ]
    assert found[3].startswith(
        f"{own}/call_final.txt.j2: call_final.txt.j2: line 2: syntax error: Unexpected end "
        "of template."
    )
    assert len(found) == 4
    # the same notes fit QuickBooks' 2,000
    assert check(Words.load([own, BUILTIN_DIR]), note_limit_utf16=QBO_NOTE_LIMIT)[0].startswith(
        f"{own}/letter_polite.txt.j2"
    )


def test_a_missing_template_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    found = check(Words.load([tmp_path]), note_limit_utf16=None)
    assert len(found) == 4 * 4
    assert found[0] == f"note_friendly.txt.j2: note_friendly.txt.j2: not found in {tmp_path}"


@pytest.mark.parametrize("limit", [XERO_NOTE_LIMIT, QBO_NOTE_LIMIT])
def test_the_shipped_templates_pass_the_check_for_both_platforms(words: Words, limit: int) -> None:
    assert check(words, note_limit_utf16=limit) == []
    for policy in builtin_policies().values():
        titles = [stage.label for stage in policy.stages]
        assert check(words, note_limit_utf16=limit, stage_titles=titles) == []


def test_a_policy_with_long_stage_titles_fails_the_xero_check(words: Words) -> None:
    titles = ["a first reminder, sent with every courtesy", "final notice before any hand-over"]
    found = check(words, note_limit_utf16=XERO_NOTE_LIMIT, stage_titles=titles)
    assert len(found) == 4 and all("over the limit of 250" in line for line in found)
    assert check(words, note_limit_utf16=QBO_NOTE_LIMIT, stage_titles=titles) == []


# -- the shipped copies ----------------------------------------------------------------------------


def test_the_repos_templates_are_the_packaged_ones_byte_for_byte() -> None:
    shipped = sorted((ROOT / "config" / "templates").glob("*.j2"))
    packaged = sorted(BUILTIN_DIR.glob("*.j2"))
    assert [p.name for p in shipped] == [p.name for p in packaged]
    assert sorted(p.name for p in packaged) == sorted(template_names())
    for copy, original in zip(shipped, packaged, strict=True):
        assert copy.read_bytes() == original.read_bytes(), copy.name


def test_policy_templates_key_must_stay_under_config_templates() -> None:
    base = {**tomllib.loads(builtin_text("standard")), "name": "standard"}
    assert Policy.model_validate({**base, "templates": "gentle/words"}).templates == "gentle/words"
    for bad in ["../secrets", "/etc", "Words", "a//b"]:
        with pytest.raises(ValueError, match="must name a directory under config/templates/"):
            Policy.model_validate({**base, "templates": bad})
