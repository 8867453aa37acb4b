"""The Xero connector's writer side: fresh reads, emails, History notes, read-back, Expected Date.

Every write goes through the connector's `ApiSession` under the caller's key, sent as Xero's
`Idempotency-Key` header, so a write whose reply was lost is resent only while Xero still
remembers the key (else OutcomeUnknown). What Xero leaves after an API email is undocumented:
whether it sets SentToContact, and what (if anything) it writes into the invoice's History. So
`read_back` reports the History records that look like an email record (Changes "Sent" or
"Emailed") but says `emails_recorded=False`: an email missing from History proves nothing.

Xero's refusals of an email are 400 ValidationExceptions told apart by their message alone:
one about the contact's email address is `NoEmailAddress`; the over-cap refusal (1,000 a day
for paying organisations, 20 for trials, 0 for the demo company, figures from third parties)
is undocumented, so `EmailCapReached` is any message that speaks of a daily limit, cap or
quota (the sandbox says "The daily limit of emails for this organisation has been reached");
anything else stays a PermanentError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from arsync.connectors.base import (
    FoundEmail,
    FoundNote,
    FreshInvoice,
    NoteOutcome,
    NoteWrite,
    Trail,
)
from arsync.connectors.xero import mapping
from arsync.connectors.xero.client import Row, XeroClient, parse_xero_date, validation_messages
from arsync.domain import Invoice, Quarantined
from arsync.errors import (
    ArsyncError,
    DataError,
    EmailCapReached,
    NoEmailAddress,
    OutcomeUnknown,
    PermanentError,
)

#: a History record's Details: Xero says 250 characters without saying which; counted in UTF-16
#: code units (how .NET, Xero's platform, counts a string), the stricter reading for emoji
HISTORY_DETAILS_MAX = 250
#: Xero's longest Idempotency-Key (the OpenAPI file: "128 character max")
IDEMPOTENCY_KEY_MAX = 128

#: an over-cap refusal, as far as its (undocumented) message can be recognised: a day's limit
_EMAIL_CAP = re.compile(
    r"(daily|per day|a day|each day|today|24.hour).{0,60}\b(limit|cap|quota|maximum)"
    r"|\b(limit|cap|quota|maximum)\b.{0,60}(daily|per day|a day|each day|today|24.hour)"
    r"|\b(limit|cap|quota)\b of (invoice )?e-?mails",
    re.IGNORECASE,
)
#: a refusal naming the contact's email address (missing or invalid): nowhere to send it
_NO_ADDRESS = re.compile(r"e-?mail\s*address", re.IGNORECASE)
#: History's `Changes` on the record of an email (the sandbox writes "Sent"; unknown on Xero)
_EMAIL_CHANGES = frozenset({"sent", "emailed"})
#: "…sent to ann@example.com, bob@example.com." in an email record's Details
_SENT_TO = re.compile(r"\b(?:sent|emailed)\s+to\s+(?P<to>.+?)\.?\s*$", re.IGNORECASE)


def utf16_units(text: str) -> int:
    """A string's length in UTF-16 code units (an emoji is 2), as .NET counts it."""
    return len(text.encode("utf-16-le")) // 2


class XeroWriter:
    """What the dispatcher asks of a Xero organisation (`connectors.base.Writer`).

    Mixed into XeroConnector, which provides `client`.
    """

    client: XeroClient

    # -- reading before a write -------------------------------------------------------------------
    def fresh(self, invoice_ids: Sequence[str]) -> dict[str, FreshInvoice]:
        """The invoices as Xero has them now: `GET /Invoices?IDs=` 100 at a time. Keyed by the
        ids as asked (Xero's GUIDs match in any case); a bill, a DELETED invoice or an id Xero
        does not know is left out. A row arsync cannot read is a DataError, never guessed at."""
        asked = {ident.lower(): ident for ident in invoice_ids}
        found: dict[str, FreshInvoice] = {}
        for row in self.client.invoices_by_id(invoice_ids):
            mapped = mapping.invoice(row)
            if isinstance(mapped, Quarantined):
                raise DataError(f"Xero invoice {mapped.id or '?'} is unreadable: {mapped.reason}")
            if not isinstance(mapped, Invoice):
                continue
            ident = asked.get(mapped.id.lower())
            if ident is not None:
                # Xero sends to the contact's addresses, which the invoice does not carry, and
                # keeps no record of its emails on the invoice.
                found[ident] = FreshInvoice(mapped, bill_email=None, delivered_at=None)
        return found

    # -- writing ----------------------------------------------------------------------------------
    def email(self, invoice_id: str, *, key: str, send_to: str | None = None) -> FoundEmail | None:
        """`POST /Invoices/{id}/Email` with `{}`: Xero emails the invoice to the contact's
        address and its contact persons marked IncludeInEmails, and answers 204 with nothing
        to show for it (so None). Xero cannot send to another address: `send_to` is refused."""
        if send_to is not None:
            raise ValueError("Xero emails an invoice to its contact only: send_to is not supported")
        _check_key(key)
        try:
            self.client.email_invoice(invoice_id, key=key)
        except PermanentError as err:
            raise _email_refusal(err, invoice_id) from err
        return None

    def notes(self, notes: Sequence[NoteWrite]) -> list[NoteOutcome]:
        """One `PUT /Invoices/{id}/History` per note, each under its key. Every note is checked
        before the first call (ValueError: Details over 250 UTF-16 code units, or empty; a key
        Xero would refuse), so a bad one never leaves the others half written. A refusal (4xx)
        is that note's outcome; a lost reply (OutcomeUnknown) and any other failure propagate,
        the notes before it written (their keys make resending them safe while Xero remembers
        the keys; `read_back` tells after that)."""
        for note in notes:
            _check_key(note.key)
            if not note.text.strip():
                raise ValueError(f"note {note.key}: a History record needs Details")
            units = utf16_units(note.text)
            if units > HISTORY_DETAILS_MAX:
                raise ValueError(
                    f"note {note.key}: {units} UTF-16 code units, over Xero's "
                    f"{HISTORY_DETAILS_MAX} for a History record"
                )
        outcomes: list[NoteOutcome] = []
        for n, note in enumerate(notes):
            try:
                self.client.add_history(note.invoice_id, note.text, key=note.key)
            except PermanentError as err:
                outcomes.append(NoteOutcome(note.key, written=False, error=err))
                continue
            except OutcomeUnknown:
                raise
            except ArsyncError as err:
                # Surely not performed (a 429, no connection, a 401): this note and the rest
                # are not written, and those before it were, so that only they are tried again.
                outcomes.extend(NoteOutcome(n_.key, written=False, error=err) for n_ in notes[n:])
                return outcomes
            # A History record has no id of its own in Xero's API.
            outcomes.append(NoteOutcome(note.key, written=True))
        return outcomes

    def expect_payment(self, invoice_id: str, day: date | None, *, key: str) -> bool:
        """The invoice's Expected Date (`ExpectedPaymentDate`) through `POST /Invoices/{id}`;
        None clears it. Always True: Xero has the field."""
        _check_key(key)
        self.client.set_expected_date(invoice_id, None if day is None else day.isoformat(), key=key)
        return True

    # -- reading back -----------------------------------------------------------------------------
    def read_back(self, invoice_ids: Sequence[str]) -> dict[str, Trail]:
        """Each invoice's History (`GET /Invoices/{id}/History`, one call each): every record
        with Details as a note, and those that look like an email record as emails. Xero's
        record of an API email is undocumented, so `emails_recorded` is False."""
        trails: dict[str, Trail] = {}
        for ident in dict.fromkeys(invoice_ids):
            records = self.client.history(ident)
            if records is None:
                continue  # Xero no longer has the invoice
            trails[ident] = _trail(records)
        return trails


def _check_key(key: str) -> None:
    if not key or not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX:
        raise ValueError(
            f"an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX} characters, not {len(key)}"
        )


def _email_refusal(err: PermanentError, invoice_id: str) -> PermanentError:
    """The precise kind of an email's refusal, read from Xero's messages (400s only)."""
    if err.status != 400:
        return err
    messages = validation_messages(err.body)
    said = "; ".join(messages) or str(err)
    if any(_EMAIL_CAP.search(m) for m in messages):
        return EmailCapReached(
            f"Xero refused to email invoice {invoice_id}: the organisation's emails for today "
            f"are spent ({said})",
            status=err.status,
            body=err.body,
        )
    if any(_NO_ADDRESS.search(m) for m in messages):
        return NoEmailAddress(
            f"Xero cannot email invoice {invoice_id}: its contact has no email address it can "
            f"use ({said})",
            status=err.status,
            body=err.body,
        )
    return err


def _trail(records: list[Row]) -> Trail:
    notes: list[FoundNote] = []
    emails: list[FoundEmail] = []
    for record in records:
        details = record.get("Details")
        if not isinstance(details, str) or not details.strip():
            continue  # kept verbatim otherwise: the dispatcher matches the text it wrote
        at = _moment(record.get("DateUTC"))
        notes.append(FoundNote(details, at))
        changes = (_text(record.get("Changes")) or "").lower()
        if changes in _EMAIL_CHANGES and at is not None:
            sent_to = _SENT_TO.search(details)
            to = sent_to.group("to").strip() if sent_to else None
            emails.append(FoundEmail(at, to, f"{record.get('Changes')}: {details}"))
    return Trail(notes=tuple(notes), emails=tuple(emails), emails_recorded=False)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _moment(value: Any) -> datetime | None:
    """A record's DateUTC; None when it has none arsync can read (a note is kept without it)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_xero_date(value)
    except DataError:
        return None


__all__ = ["HISTORY_DETAILS_MAX", "IDEMPOTENCY_KEY_MAX", "XeroWriter", "utf16_units"]
