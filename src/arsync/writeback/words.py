"""The words people read: ledger notes, letters and call scripts, from templates a firm may edit.

Templates are Jinja2 files, one per tone (`Tone` in the policy) and kind:

    note_<tone>.txt.j2      the dated note written on the invoice (one line)
    letter_<tone>.txt.j2    the letter's plain text; it sets the subject: {% set subject = … %}
    letter_<tone>.html.j2   the same letter in HTML (escaped automatically)
    call_<tone>.txt.j2      the script of a call task for a person at the firm

They are looked up along a search path, first found wins: a connector's own directory
(config/templates/connectors/NAME/), the policy's (its `templates` key), config/templates/
(byte-identical copies of the built-in ones, for a firm to edit), then arsync's own. A firm
writes them, so they run sandboxed, and every field a template names must exist: a misspelt
field is an error, not an empty gap. `check()` renders every template against the longest
realistic values at start-up, so that a note too long for the platform, an unknown field or a
syntax error is found before anything is written.

The note's reference marker is appended by code, never by the template, so no template can lose
it: the write-back finds its own notes by it.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from arsync.domain import Invoice
from arsync.errors import ConfigError
from arsync.escalation.policy import LatePayment, Policy, Regime, Tone
from arsync.writeback.interest import Claim, Period, claim, day_text, money_text

T = TypeVar("T")

#: arsync's own templates, shipped in the package (and copied to config/templates/)
BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
#: the firm's templates, relative to the arsync home
TEMPLATES_DIR = "config/templates"
#: a connector's own templates, under TEMPLATES_DIR
CONNECTORS_SUBDIR = "connectors"

#: the platforms' limits on a note, in UTF-16 code units: Xero's invoice history record
#: (documented as 250 characters, the unit unsaid: UTF-16 is the stricter reading), and a
#: QuickBooks attachable note
XERO_NOTE_LIMIT = 250
QBO_NOTE_LIMIT = 2000
#: the longest marker the write-back appends: an action id in full (26 characters of base32)
MARKER_MAX = 26
_ELLIPSIS = "…"


class Event(StrEnum):
    """What a note records."""

    EMAILED = "emailed"  # the platform emailed the invoice: `to`
    NOT_EMAILED = "not_emailed"  # it could not: `reason` (e.g. no email address)
    CALL = "call"  # a call task was opened (`to`: the number, if known)
    CALL_OUTCOME = "call_outcome"  # a call's result: `outcome`, `who`, and for a promise `by`
    LETTER = "letter"  # a letter went through the firm's mail server: `to`, `subject`
    HANDOVER = "handover"  # the debt went to a collection agency: `agency`
    PROMISE = "promise"  # `who` promised `amount` by `by`
    PROMISE_BROKEN = "promise_broken"  # the promise of `by` was not kept
    DISPUTE = "dispute"  # the customer disputes the invoice: `reason`
    PLAN = "plan"  # a payment plan: `instalments` of `amount` from `by`
    PLAN_ENDED = "plan_ended"  # the plan ended: `reason`
    SETTLEMENT = "settlement"  # `amount` accepted in full settlement (by `by`, if said)
    PAUSED = "paused"  # the chase paused (until `by`, if said): `reason`
    RESUMED = "resumed"  # the chase resumed
    NOTED = "noted"  # anything else, said in `reason`


class CallOutcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    PROMISED = "promised"  # a promise to pay by `by`
    DISPUTED = "disputed"
    PLAN = "plan"  # a payment plan agreed


#: the fields of NoteFacts each event needs
_NEEDS: dict[Event, tuple[str, ...]] = {
    Event.EMAILED: ("to",),
    Event.NOT_EMAILED: ("reason",),
    Event.CALL_OUTCOME: ("outcome",),
    Event.LETTER: ("to", "subject"),
    Event.HANDOVER: ("agency",),
    Event.PROMISE: ("by",),
    Event.PROMISE_BROKEN: ("by",),
    Event.PLAN: ("instalments", "amount", "by"),
    Event.PLAN_ENDED: ("reason",),
    Event.SETTLEMENT: ("amount",),
    Event.NOTED: ("reason",),
}


@dataclass(frozen=True)
class NoteFacts:
    """What one ledger note says. Amounts are text with their currency ("1,200.00 USD")."""

    #: the day, in the firm's time zone
    today: date
    firm: str
    customer: str
    #: the invoice's number (or id, when it has none)
    invoice: str
    #: the stage's title ("30-day reminder"); None for an event outside the stages
    stage: str | None
    tone: Tone
    event: Event
    #: what is owed now
    balance: str
    #: what was owed when the action was planned, given only when it has changed since
    planned_balance: str | None = None
    #: the next step ("call", "final notice") and its day, when known
    next_step: str | None = None
    next_day: date | None = None
    #: an email address (emailed, letter) or a phone number (call)
    to: str | None = None
    #: why (not emailed, dispute, plan ended, paused)
    reason: str | None = None
    #: the letter's subject
    subject: str | None = None
    #: the collection agency (handover)
    agency: str | None = None
    outcome: CallOutcome | None = None
    #: the person (who answered, who promised)
    who: str | None = None
    #: an amount (promised, each instalment, settlement)
    amount: str | None = None
    #: a day (promised by, first instalment, paused until, settlement by)
    by: date | None = None
    #: how many instalments (plan)
    instalments: int | None = None

    def __post_init__(self) -> None:
        missing = [name for name in _NEEDS.get(self.event, ()) if getattr(self, name) is None]
        if self.event is Event.CALL_OUTCOME and self.outcome is CallOutcome.PROMISED:
            missing += [] if self.by is not None else ["by"]
        if missing:
            raise ValueError(f"a {self.event.value} note needs {', '.join(missing)}")


@dataclass(frozen=True)
class OverdueInvoice:
    """One invoice on a letter or a call script; amounts as text with their currency."""

    number: str
    issued: date
    due: date
    total: str
    balance: str
    #: days past the due date (negative: not yet due)
    days_overdue: int
    #: statutory interest and fixed compensation, when the policy claims them on it
    claim: Claim | None = None

    @classmethod
    def of(cls, invoice: Invoice, today: date, terms: LatePayment | None) -> OverdueInvoice:
        """MissingRate (a ConfigError) when the policy lacks a reference rate the law needs."""
        found = (
            claim(terms, invoice.balance, invoice.currency, invoice.due_date, today)
            if terms is not None
            else None
        )
        return cls(
            number=invoice.number or invoice.id,
            issued=invoice.issue_date,
            due=invoice.due_date,
            total=money_text(invoice.total, invoice.currency),
            balance=money_text(invoice.balance, invoice.currency),
            days_overdue=(today - invoice.due_date).days,
            claim=found,
        )


@dataclass(frozen=True)
class LetterFacts:
    """What a letter says: every overdue invoice of the customer, with the law's sums if any.

    Totals are text per currency, joined with " + " in the rare book of several currencies."""

    today: date
    tone: Tone
    firm: str
    firm_email: str | None
    firm_phone: str | None
    customer: str
    customer_email: str
    invoices: tuple[OverdueInvoice, ...]
    #: the balances together
    owed: str
    #: statutory interest together, fixed compensation together, and all of it with the
    #: balances; None when no invoice carries a claim
    interest: str | None
    compensation: str | None
    claimed: str | None
    #: the law the claims are made under, when there are claims
    law: str | None
    #: the reference the customer quotes back (the write-back's marker)
    reference: str
    #: the stage's title
    stage: str | None = None

    @classmethod
    def build(
        cls,
        *,
        today: date,
        tone: Tone,
        firm: str,
        firm_email: str | None,
        firm_phone: str | None,
        customer: str,
        customer_email: str,
        invoices: Sequence[Invoice],
        late_payment: LatePayment | None,
        reference: str,
        stage: str | None = None,
    ) -> LetterFacts:
        """From the customer's open invoices: those past due, oldest first, with the law's
        sums (before any is due, a reminder lists those still open)."""
        chosen = _chosen(invoices, today)
        lines = [OverdueInvoice.of(i, today, late_payment) for i in chosen]
        claims = [line.claim for line in lines if line.claim is not None]
        balances = [(i.balance, i.currency) for i in chosen]
        fixed = [(c.fixed_sum, c.currency) for c in claims if c.fixed_sum is not None]
        return cls(
            today=today,
            tone=tone,
            firm=firm,
            firm_email=firm_email,
            firm_phone=firm_phone,
            customer=customer,
            customer_email=customer_email,
            invoices=tuple(lines),
            owed=_totals(balances),
            interest=_totals([(c.interest, c.currency) for c in claims]) if claims else None,
            compensation=_totals(fixed) if fixed else None,
            claimed=(
                _totals(balances + [(c.total, c.currency) for c in claims]) if claims else None
            ),
            law=claims[0].law if claims else None,
            reference=reference,
            stage=stage,
        )


@dataclass(frozen=True)
class CallFacts:
    """What a call script says: who to call, what is owed and how old, and what came before."""

    today: date
    tone: Tone
    firm: str
    customer: str
    phone: str | None
    #: the balances together
    owed: str
    #: days the oldest invoice is past due
    oldest_days: int
    invoices: tuple[OverdueInvoice, ...]
    #: the notes so far, oldest first
    history: tuple[str, ...]
    stage: str | None = None

    @classmethod
    def build(
        cls,
        *,
        today: date,
        tone: Tone,
        firm: str,
        customer: str,
        phone: str | None,
        invoices: Sequence[Invoice],
        history: Sequence[str],
        late_payment: LatePayment | None = None,
        stage: str | None = None,
    ) -> CallFacts:
        chosen = _chosen(invoices, today)
        lines = [OverdueInvoice.of(i, today, late_payment) for i in chosen]
        return cls(
            today=today,
            tone=tone,
            firm=firm,
            customer=customer,
            phone=phone,
            owed=_totals([(i.balance, i.currency) for i in chosen]),
            oldest_days=max((line.days_overdue for line in lines), default=0),
            invoices=tuple(lines),
            history=tuple(history),
            stage=stage,
        )


def _chosen(invoices: Sequence[Invoice], today: date) -> list[Invoice]:
    """Those past due, oldest first; when none is, those still open (a reminder before the due
    date)."""
    open_ = sorted(
        (i for i in invoices if i.balance > 0), key=lambda i: (i.due_date, i.number or i.id)
    )
    return [i for i in open_ if i.due_date < today] or open_


def _totals(amounts: Sequence[tuple[Decimal, str]]) -> str:
    """ "1,200.00 USD", or one total per currency joined by " + "."""
    by_currency: dict[str, Decimal] = {}
    for amount, currency in amounts:
        by_currency[currency] = by_currency.get(currency, Decimal(0)) + amount
    return " + ".join(money_text(total, cur) for cur, total in sorted(by_currency.items()))


@dataclass(frozen=True)
class Letter:
    subject: str
    text: str
    html: str


class TemplateProblem(ConfigError):
    """A template cannot be rendered: "file: template: message"."""


# -- the words ---------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """The length of `text` in UTF-16 code units (an emoji counts two), as Xero may count."""
    return len(text.encode("utf-16-le")) // 2


def search_path(
    home: Path, *, connector: str | None = None, policy: Policy | None = None
) -> list[Path]:
    """Where templates are looked for, first found wins; arsync's own always come last.

    A connector's directory and config/templates/ are used when they exist; a directory the
    policy names must exist (ConfigError otherwise), since the policy asked for it."""
    base = Path(home) / TEMPLATES_DIR
    dirs: list[Path] = []
    if connector is not None and (base / CONNECTORS_SUBDIR / connector).is_dir():
        dirs.append(base / CONNECTORS_SUBDIR / connector)
    if policy is not None and policy.templates is not None:
        own = base / policy.templates
        if not own.is_dir():
            raise ConfigError(
                f"config/policies/{policy.name}.toml: templates: {TEMPLATES_DIR}/"
                f"{policy.templates} is not a directory"
            )
        dirs.append(own)
    if base.is_dir():
        dirs.append(base)
    dirs.append(BUILTIN_DIR)
    return dirs


def template_names() -> list[str]:
    """Every template a full set of words has, in the order check() reports them."""
    return [
        name
        for tone in Tone
        for name in (
            f"note_{tone.value}.txt.j2",
            f"letter_{tone.value}.txt.j2",
            f"letter_{tone.value}.html.j2",
            f"call_{tone.value}.txt.j2",
        )
    ]


def _html(name: str | None) -> bool:
    # only HTML is escaped: a note or a plain-text letter would show "&amp;" to its reader
    return name is not None and name.removesuffix(".j2").endswith((".html", ".htm"))


class Words:
    """The templates found along one search path, ready to render."""

    def __init__(self, dirs: Sequence[Path], *, home: Path | None = None) -> None:
        self.dirs = tuple(Path(d) for d in dirs)
        self.home = home
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined,
            autoescape=_html,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["day"] = day_text
        self.env.filters["soon"] = _soon
        self.env.filters["days"] = days_text
        self.env.filters["overdue"] = overdue_text

    @classmethod
    def load(cls, dirs: Sequence[Path], *, home: Path | None = None) -> Words:
        """Words from `dirs`, searched in order (see search_path()); `home` only shortens the
        paths problems show."""
        return cls(dirs, home=home)

    # -- rendering ---------------------------------------------------------------------------

    def note(self, facts: NoteFacts, marker: str, *, limit_utf16: int | None = None) -> str:
        """One line: the template's words, whitespace collapsed, then " · ref MARKER".

        With a limit, words that would pass it are cut short (ending "…") so that the marker
        always fits: check() warns about that at start-up, and this keeps an unforeseen value
        from making a note the platform refuses."""
        if not marker or any(c.isspace() for c in marker):
            raise ValueError(f"a note's marker must be one word, got {marker!r}")
        body = self._note_body(facts)
        suffix = f" · ref {marker}"
        if limit_utf16 is not None and utf16_len(body + suffix) > limit_utf16:
            body = _cut(body, limit_utf16 - utf16_len(suffix + _ELLIPSIS)) + _ELLIPSIS
        return body + suffix

    def letter(self, facts: LetterFacts) -> Letter:
        subject, text = self._letter_text(facts)
        return Letter(subject=subject, text=text, html=self._letter_html(facts, subject))

    def _letter_text(self, facts: LetterFacts) -> tuple[str, str]:
        """The subject (which the text template sets) and the plain text."""
        name = f"letter_{facts.tone.value}.txt.j2"
        text, exported = self._render_module(name, _fields(facts))
        # one line, whatever the template did: a line break in a header would start another
        subject = " ".join(str(exported.get("subject", "")).split())
        if not subject:
            raise TemplateProblem(
                f"{self.where(name)}: {name}: sets no subject "
                '({% set subject = "…" %} at the top)'
            )
        return subject, _tidy(text)

    def _letter_html(self, facts: LetterFacts, subject: str) -> str:
        name = f"letter_{facts.tone.value}.html.j2"
        return self._render(name, {**_fields(facts), "subject": subject}).strip() + "\n"

    def _note_body(self, facts: NoteFacts) -> str:
        name = f"note_{facts.tone.value}.txt.j2"
        body = " ".join(self._render(name, _fields(facts)).split())
        if not body:
            raise TemplateProblem(f"{self.where(name)}: {name}: renders an empty note")
        return body

    def call_script(self, facts: CallFacts) -> str:
        return _tidy(self._render(f"call_{facts.tone.value}.txt.j2", _fields(facts)))

    def where(self, name: str) -> str:
        """The file a template comes from, as problems show it."""
        for directory in self.dirs:
            path = directory / name
            if path.is_file():
                return self._shown(path)
        return name

    def unknown_fields(self, name: str, known: frozenset[str]) -> list[str]:
        """The fields `name` uses that its facts do not have, in every branch (rendering sees
        only the branches the sample takes); "file: template: line N: …" each."""
        assert self.env.loader is not None
        try:
            source, filename, _ = self.env.loader.get_source(self.env, name)
            tree = self.env.parse(source, name, filename)
        except jinja2.TemplateError:
            return []  # not found, or a syntax error: rendering says which, with its line
        unknown = meta.find_undeclared_variables(tree) - known - set(self.env.globals)
        file = self._shown(Path(filename)) if filename else name
        found = []
        for node in tree.find_all(nodes.Name):
            if node.name in unknown:
                unknown.discard(node.name)
                found.append(
                    f"{file}: {name}: line {node.lineno}: unknown field: '{node.name}' is undefined"
                )
        return found

    # -- inside ------------------------------------------------------------------------------

    def _shown(self, path: Path) -> str:
        path = Path(path)
        if path.is_relative_to(BUILTIN_DIR):
            inside = path.relative_to(BUILTIN_DIR).as_posix()
            return "arsync/writeback/templates" + ("" if inside == "." else f"/{inside}")
        if self.home is not None and path.is_absolute() and path.is_relative_to(self.home):
            return path.relative_to(self.home).as_posix()
        return path.as_posix()

    def _render(self, name: str, values: Mapping[str, Any]) -> str:
        return self._guarded(name, lambda: self.env.get_template(name).render(values))

    def _render_module(self, name: str, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        def run() -> tuple[str, dict[str, Any]]:
            template = self.env.get_template(name)
            try:
                module = template.make_module(dict(values))
            except Exception:
                # render() points an error at the template's line; make_module() leaves that
                # to its caller
                self.env.handle_exception()
            return str(module), {k: v for k, v in vars(module).items() if not k.startswith("_")}

        return self._guarded(name, run)

    def _guarded(self, name: str, run: Callable[[], T]) -> T:
        try:
            return run()
        except jinja2.TemplateSyntaxError as err:
            file = self._shown(Path(err.filename)) if err.filename else self.where(name)
            raise TemplateProblem(
                f"{file}: {name}: line {err.lineno}: syntax error: {err.message}"
            ) from None
        except jinja2.TemplateNotFound as err:
            looked = ", ".join(self._shown(d) for d in self.dirs)
            if err.name == name:
                raise TemplateProblem(f"{name}: {name}: not found in {looked}") from None
            raise TemplateProblem(
                f"{self.where(name)}: {name}: uses {err.name}, not found in {looked}"
            ) from None
        except jinja2.UndefinedError as err:
            file, line = self._located(err, name)
            raise TemplateProblem(f"{file}: {name}: {line}unknown field: {err.message}") from None
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as err:
            # a sandbox refusal, a filter given the wrong kind of value, a bad format
            file, line = self._located(err, name)
            text = getattr(err, "message", None) or str(err)
            raise TemplateProblem(f"{file}: {name}: {line}{text}") from None

    def _located(self, err: BaseException, name: str) -> tuple[str, str]:
        """The template file and line an error was raised at (Jinja rewrites the traceback
        so that its frames are the template's lines)."""
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            if frame.filename.endswith(".j2"):
                return self._shown(Path(frame.filename)), f"line {frame.lineno}: "
        return self.where(name), ""


def _fields(facts: object) -> dict[str, Any]:
    # shallow: nested facts keep their properties (a claim's sentence), not dict copies
    assert dataclasses.is_dataclass(facts)
    assert not isinstance(facts, type)
    return {f.name: getattr(facts, f.name) for f in dataclasses.fields(facts)}


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines) + "\n"


def _cut(text: str, units: int) -> str:
    """The longest start of `text` within `units` UTF-16 code units, never half a character."""
    out, used = [], 0
    for char in text:
        size = utf16_len(char)
        if used + size > units:
            break
        out.append(char)
        used += size
    return "".join(out).rstrip()


def days_text(days: int) -> str:
    """ "1 day", "45 days"."""
    return "1 day" if abs(days) == 1 else f"{abs(days)} days"


def overdue_text(days: int) -> str:
    """ "45 days overdue", "due today", "due in 3 days"."""
    if days > 0:
        return f"{days_text(days)} overdue"
    return "due today" if days == 0 else f"due in {days_text(days)}"


@jinja2.pass_context
def _soon(context: Context, day: date) -> str:
    """ "4 Jan" for a day in the coming months (the year is plain), else "4 Jan 2028"."""
    today = context.get("today")
    if isinstance(today, date) and 0 <= (day - today).days < 300:
        return f"{day.day} {day_text(day).split()[1]}"
    return day_text(day)


# -- the start-up check ------------------------------------------------------------------------

#: the longest realistic values: a check passes only if the worst case of every field fits
SAMPLE_DAY = date(2026, 9, 28)  # two-digit day: the longest date
SAMPLE_NEXT = date(2026, 12, 28)
SAMPLE_AMOUNT = "9,999,999,999.99 USD"
_SAMPLE_POUNDS = "9,999,999,999.99 GBP"  # a letter's sample claims interest, in pounds
SAMPLE_EMAIL = "accounts.payable@northwind-traders.example"  # 42
SAMPLE_FIRM = "Harbor & Finch Mechanical Contractors Ltd"
SAMPLE_CUSTOMER = "Northwind Traders International Holdings Ltd"
SAMPLE_PERSON = "Bartholomew Featherstonehaugh-Smith"
SAMPLE_AGENCY = "Atlantic Commercial Collections Ltd"
SAMPLE_REASON = "no email address on file: a call task instead"
SAMPLE_TITLE = "final notice before a hand-over"  # 30
SAMPLE_SUBJECT = "Final notice: 3 overdue invoices, 9,999,999,999.99 USD"


def sample_notes(
    stage: str = SAMPLE_TITLE, next_step: str | None = SAMPLE_TITLE
) -> list[NoteFacts]:
    """A note of every event and every call outcome, each with every field at its longest."""
    base: dict[str, Any] = {
        "today": SAMPLE_DAY,
        "firm": SAMPLE_FIRM,
        "customer": SAMPLE_CUSTOMER,
        "invoice": "INV-2026-000123456",
        "stage": stage,
        "tone": Tone.FINAL,
        "balance": SAMPLE_AMOUNT,
        "planned_balance": SAMPLE_AMOUNT,
        "next_step": next_step,
        "next_day": SAMPLE_NEXT,
        "reason": SAMPLE_REASON,
        "subject": SAMPLE_SUBJECT,
        "agency": SAMPLE_AGENCY,
        "who": SAMPLE_PERSON,
        "amount": SAMPLE_AMOUNT,
        "by": SAMPLE_NEXT,
        "instalments": 12,
    }
    notes = []
    for event in Event:
        to = "+44 20 7946 0000 ext. 1234" if event is Event.CALL else SAMPLE_EMAIL
        if event is Event.CALL_OUTCOME:
            notes += [
                NoteFacts(**base, event=event, to=to, outcome=outcome) for outcome in CallOutcome
            ]
        else:
            notes.append(NoteFacts(**base, event=event, to=to))
    # and the plainest note, so that a template leaning on an optional field is caught too
    notes.append(
        NoteFacts(
            today=SAMPLE_DAY,
            firm=SAMPLE_FIRM,
            customer=SAMPLE_CUSTOMER,
            invoice="1",
            stage=None,
            tone=Tone.FRIENDLY,
            event=Event.RESUMED,
            balance="1.00 USD",
        )
    )
    return notes


def sample_letter(tone: Tone) -> LetterFacts:
    lines = tuple(
        OverdueInvoice(
            number=f"INV-2026-00012345{n}",
            issued=date(2026, 5, 28),
            due=date(2026, 6, 27),
            total=_SAMPLE_POUNDS,
            balance=_SAMPLE_POUNDS,
            days_overdue=93,
            claim=claimed,
        )
        for n, claimed in enumerate([_sample_claim(), None])
    )
    return LetterFacts(
        today=SAMPLE_DAY,
        tone=tone,
        firm=SAMPLE_FIRM,
        firm_email=SAMPLE_EMAIL,
        firm_phone="+44 20 7946 0000",
        customer=SAMPLE_CUSTOMER,
        customer_email=SAMPLE_EMAIL,
        invoices=lines,
        owed=_SAMPLE_POUNDS,
        interest="302,465,753.42 GBP",
        compensation="100.00 GBP",
        claimed=_SAMPLE_POUNDS,
        law="Late Payment of Commercial Debts (Interest) Act 1998",
        reference="x" * MARKER_MAX,
        stage=SAMPLE_TITLE,
    )


def sample_call(tone: Tone) -> CallFacts:
    letter = sample_letter(tone)
    return CallFacts(
        today=SAMPLE_DAY,
        tone=tone,
        firm=SAMPLE_FIRM,
        customer=SAMPLE_CUSTOMER,
        phone="+44 20 7946 0000 ext. 1234",
        owed=_SAMPLE_POUNDS,
        oldest_days=93,
        invoices=letter.invoices,
        history=("28 Aug 2026 · 60-day call and reminder emailed to a@b.example · ref x",),
        stage=SAMPLE_TITLE,
    )


def _sample_claim() -> Claim:
    return Claim(
        regime=Regime.UK,
        currency="GBP",
        principal=Decimal("9999999999.99"),
        due=date(2026, 6, 27),
        day=SAMPLE_DAY,
        margin=Decimal(8),
        reference_name="Bank of England base rate",
        periods=(
            Period(date(2026, 6, 28), SAMPLE_DAY, date(2025, 12, 31), Decimal(4), Decimal(12)),
        ),
        interest=Decimal("302465753.42"),
        fixed_sum=Decimal(100),
    )


def check(
    words: Words,
    *,
    note_limit_utf16: int | None,
    stage_titles: Sequence[str] = (),
    marker_length: int = MARKER_MAX,
) -> list[str]:
    """Every problem the templates would cause, as "file: template: message" lines.

    Each template is rendered against the longest realistic values; a note must fit
    `note_limit_utf16` with a marker of `marker_length` (XERO_NOTE_LIMIT, QBO_NOTE_LIMIT).
    `stage_titles`, the policy's in order, are tried as they follow each other (a stage's
    note names the next one), besides a sample title of 30 characters."""
    problems: list[str] = []
    titles = list(stage_titles)
    following: list[str | None] = [*titles[1:], None]
    pairs = [(SAMPLE_TITLE, SAMPLE_TITLE), *zip(titles, following, strict=False)]
    suffix = f" · ref {'x' * marker_length}"
    for tone in Tone:
        for template, known in _fields_of(tone).items():
            problems += words.unknown_fields(template, known)
        name = f"note_{tone.value}.txt.j2"
        longest: tuple[int, str] = (0, "")
        for facts in (f for pair in pairs for f in sample_notes(*pair)):
            facts = dataclasses.replace(facts, tone=tone)
            try:
                size = utf16_len(words._note_body(facts) + suffix)
            except TemplateProblem as err:
                problems.append(str(err))
                continue
            if size > longest[0]:
                longest = (size, _event_said(facts))
        if note_limit_utf16 is not None and longest[0] > note_limit_utf16:
            problems.append(
                f"{words.where(name)}: {name}: a note of {longest[0]} UTF-16 units with the "
                f"longest values ({longest[1]}), over the limit of {note_limit_utf16}"
            )
        letter = sample_letter(tone)
        subject = SAMPLE_SUBJECT
        try:
            subject, _ = words._letter_text(letter)
        except TemplateProblem as err:
            problems.append(str(err))
        try:
            words._letter_html(letter, subject)
        except TemplateProblem as err:
            problems.append(str(err))
        try:
            words.call_script(sample_call(tone))
        except TemplateProblem as err:
            problems.append(str(err))
    return list(dict.fromkeys(problems))


def _fields_of(tone: Tone) -> dict[str, frozenset[str]]:
    """Each template of `tone` and the fields its facts give it."""

    def names(kind: type[Any], *more: str) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(kind)) | set(more)

    return {
        f"note_{tone.value}.txt.j2": names(NoteFacts),
        f"letter_{tone.value}.txt.j2": names(LetterFacts),
        f"letter_{tone.value}.html.j2": names(LetterFacts, "subject"),
        f"call_{tone.value}.txt.j2": names(CallFacts),
    }


def _event_said(facts: NoteFacts) -> str:
    if facts.outcome is not None:
        return f"{facts.event.value}, {facts.outcome.value}"
    return facts.event.value
