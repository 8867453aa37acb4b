"""The QuickBooks Online writer: fresh reads, emails, attachable notes and their read-back.

`QuickBooksWriter` is the `base.Writer` half of `QuickBooksConnector` (which inherits it):

- `fresh`: `SELECT * FROM Invoice WHERE Id IN (...)`, 100 ids a query;
- `email`: `POST /invoice/{id}/send[?sendTo=]` under `requestid`; QBO answers with the invoice,
  whose `DeliveryInfo` is the evidence;
- `notes`: an `Attachable` per note, linked to its invoice with `IncludeOnSend: false` (so it
  never travels with an email), 30 to a `POST /batch` under a `requestid` derived from the
  batch's keys (the same notes in the same order ask the same id again, so a resent batch is
  replayed by QBO, not performed twice); a note on its own is a plain `POST /attachable`.
  Nothing is ever written to `PrivateNote` (printed on statements, maybe) or `CustomerMemo`
  (shown to the customer);
- `read_back`: the invoices again (their DeliveryInfo) and the attachables linked to them;
- `expect_payment`: QBO has no promised-date field, so nothing is done.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from arsync.connectors.base import (
    FoundEmail,
    FoundNote,
    FreshInvoice,
    NoteOutcome,
    NoteWrite,
    Trail,
)
from arsync.connectors.quickbooks import mapping
from arsync.connectors.quickbooks.client import (
    MAX_BATCH_ITEMS,
    QuickBooksClient,
    Row,
    fault_errors,
)
from arsync.domain import Quarantined
from arsync.errors import (
    ArsyncError,
    DataError,
    EmailCapReached,
    NoEmailAddress,
    OutcomeUnknown,
    PermanentError,
)

#: the longest `requestid` (and batch `bId`) sent: Intuit does not document one, so it is kept
#: to the length of the ids its own examples use
WIRE_KEY_MAX = 50
_WIRE_KEY = re.compile(rf"^[A-Za-z0-9._:-]{{1,{WIRE_KEY_MAX}}}$")

# How QBO refuses a send, read from its fault's words (Intuit documents neither refusal's code;
# both come as a 400 ValidationFault). No address: "Business Validation Error: You must enter
# the email address for this customer in order to email this invoice." (code 6000), or an
# invalid `sendTo`: "Invalid Email Address format" (code 2050). The daily cap (40 a realm in
# Intuit's sandbox; none documented in production) has no documented wording: the sandbox says
# "You have reached the limit of 40 emails a day for this company. Try again tomorrow.", and any
# refusal that speaks of emails and a limit, a quota or an excess is taken for the cap.
_ADDRESS_CODES = frozenset({"2050"})
_ADDRESS = re.compile(r"e-?mail\s*address|\bbillemail\b|\bsendto\b")
_ADDRESS_WANTED = re.compile(
    r"must enter|missing|required|invalid|not valid|no e-?mail|provide|is empty|format"
)
_EMAILS = re.compile(r"\be-?mails?\b")
_CAP = re.compile(
    r"limit|exceed|quota|too many|maximum number|per day|a day\b|daily|try again tomorrow"
)


def wire_key(key: str) -> str:
    """The `requestid` or `bId` for an idempotency key: the key itself when it is short and
    plain, else a digest of it (the same key, the same wire key, always)."""
    if _WIRE_KEY.match(key):
        return key
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[: WIRE_KEY_MAX - 2]


def batch_request_id(keys: Sequence[str]) -> str:
    """The `requestid` of a batch: a digest of its items' keys, so the same notes ask the same
    id whatever order they come in, and any other set of notes asks another."""
    digest = hashlib.sha256(json.dumps(sorted(keys)).encode()).hexdigest()
    return "b-" + digest[: WIRE_KEY_MAX - 2]


def email_refusal(err: PermanentError, invoice_id: str) -> PermanentError:
    """The precise kind of a refused send: NoEmailAddress, EmailCapReached, or `err` itself."""
    errors = fault_errors(err.body)
    codes = {str(e.get("code")) for e in errors}
    said = " ".join(
        str(e.get(k) or "") for e in errors for k in ("Message", "Detail", "element")
    ).lower()
    where = f"QuickBooks invoice {invoice_id}"
    if codes & _ADDRESS_CODES or (_ADDRESS.search(said) and _ADDRESS_WANTED.search(said)):
        return NoEmailAddress(
            f"{where}: QuickBooks has no usable email address to send it to ({_words(errors)})",
            status=err.status,
            body=err.body,
        )
    if _EMAILS.search(said) and _CAP.search(said) and "length" not in said:
        return EmailCapReached(
            f"{where}: QuickBooks' daily cap of emails for the company is reached "
            f"({_words(errors)})",
            status=err.status,
            body=err.body,
        )
    return err


def _words(errors: list[dict[str, Any]]) -> str:
    """A fault's errors as one line: code, message and detail of each."""
    said = [
        " ".join(str(e.get(k)) for k in ("code", "Message", "Detail") if e.get(k)) for e in errors
    ]
    return "; ".join(s for s in said if s)[:300] or "no detail given"


def attachable_for(note: NoteWrite) -> Row:
    """The Attachable that carries one note: linked to its invoice, never sent with it."""
    return {
        "Note": note.text,
        "AttachableRef": [
            {"EntityRef": {"type": "Invoice", "value": note.invoice_id}, "IncludeOnSend": False}
        ],
    }


def _row_id(row: Row) -> str | None:
    ident = row.get("Id")
    return str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None


class QuickBooksWriter:
    """base.Writer on QBO, for a class that has `client` (and caches the home currency in
    `_home`, as the connector does)."""

    client: QuickBooksClient
    #: (home currency,) once known
    _home: tuple[str | None] | None

    # -- fresh reads -------------------------------------------------------------------------------
    def _home_for(self, rows: list[Row]) -> str | None:
        """The home currency, read (one call) only when a row leaves its currency out."""
        if self._home is None and any(mapping.lacks_currency(row) for row in rows):
            self._home = (mapping.home_currency_of(self.client.preferences()),)
        return self._home[0] if self._home is not None else None

    def fresh(self, invoice_ids: Sequence[str]) -> dict[str, FreshInvoice]:
        rows = self.client.invoices_by_id(invoice_ids)
        home = self._home_for(rows)
        found: dict[str, FreshInvoice] = {}
        unreadable: list[Quarantined] = []
        for row in rows:
            made = mapping.fresh_invoice(row, home)
            if isinstance(made, Quarantined):
                unreadable.append(made)
            else:
                found[made.invoice.id] = made
        if unreadable:
            # Left out, an invoice would read as deleted; guessed, it could be written wrongly.
            reasons = "; ".join(q.reason for q in unreadable[:5])
            raise DataError(f"QuickBooks invoices that cannot be read: {reasons}")
        return found

    # -- email -------------------------------------------------------------------------------------
    def email(self, invoice_id: str, *, key: str, send_to: str | None = None) -> FoundEmail | None:
        try:
            row = self.client.send_invoice(invoice_id, request_id=wire_key(key), send_to=send_to)
        except PermanentError as err:
            raise email_refusal(err, invoice_id) from err
        return mapping.sent_email(row, send_to)

    # -- notes -------------------------------------------------------------------------------------
    def notes(self, notes: Sequence[NoteWrite]) -> list[NoteOutcome]:
        # The same key twice is the same write: made once, its outcome given to both.
        unique: dict[str, NoteWrite] = {}
        for note in notes:
            if unique.setdefault(note.key, note) != note:
                raise ValueError(f"two different notes under one key {note.key!r}")
        pending = list(unique.values())
        outcomes: dict[str, NoteOutcome] = {}
        for n in range(0, len(pending), MAX_BATCH_ITEMS):
            chunk = pending[n : n + MAX_BATCH_ITEMS]
            try:
                if len(chunk) == 1:
                    outcomes[chunk[0].key] = self._note_alone(chunk[0])
                else:
                    outcomes.update(self._note_batch(chunk))
            except OutcomeUnknown:
                raise
            except ArsyncError as err:
                # Surely not performed (a 429, no connection, a 401): this chunk and the rest
                # are not written, and the chunks before keep their outcomes, so that only
                # what was not written is tried again.
                for note in pending[n:]:
                    outcomes[note.key] = NoteOutcome(note.key, written=False, error=err)
                break
        return [outcomes[note.key] for note in notes]

    def _note_alone(self, note: NoteWrite) -> NoteOutcome:
        try:
            row = self.client.create_attachable(attachable_for(note), request_id=wire_key(note.key))
        except PermanentError as err:
            return NoteOutcome(note.key, written=False, error=err)
        return NoteOutcome(note.key, written=True, ref=_row_id(row))

    def _note_batch(self, chunk: list[NoteWrite]) -> dict[str, NoteOutcome]:
        by_bid = {wire_key(note.key): note for note in chunk}
        if len(by_bid) != len(chunk):
            raise ValueError("two keys of one batch give the same bId")
        items = [
            {"bId": bid, "operation": "create", "Attachable": attachable_for(note)}
            for bid, note in by_bid.items()
        ]
        request_id = batch_request_id([note.key for note in chunk])
        try:
            answers = self.client.batch(items, request_id=request_id)
        except PermanentError as err:
            # The whole batch refused: no note of it was written.
            return {note.key: NoteOutcome(note.key, written=False, error=err) for note in chunk}
        # QBO does not keep the items' order: each answer names its item by bId.
        answered = {str(a.get("bId")): a for a in answers}
        outcomes: dict[str, NoteOutcome] = {}
        for bid, note in by_bid.items():
            answer = answered.get(bid)
            fault = answer.get("Fault") if answer is not None else None
            row = answer.get("Attachable") if answer is not None else None
            if isinstance(fault, dict):
                errors = fault_errors(fault)
                refused = PermanentError(
                    f"QuickBooks note on invoice {note.invoice_id}: refused ({_words(errors)})",
                    status=400,
                    body={"Fault": fault},
                )
                outcomes[note.key] = NoteOutcome(note.key, written=False, error=refused)
            elif isinstance(row, dict):
                outcomes[note.key] = NoteOutcome(note.key, written=True, ref=_row_id(row))
            else:
                # The batch was performed, but its reply does not say what became of this note.
                raise OutcomeUnknown(
                    f"QuickBooks batch {request_id}: the reply says nothing of the note on "
                    f"invoice {note.invoice_id} (bId {bid}); read the invoice back to know"
                )
        return outcomes

    # -- read-back ---------------------------------------------------------------------------------
    def read_back(self, invoice_ids: Sequence[str]) -> dict[str, Trail]:
        rows = {
            ident: row
            for row in self.client.invoices_by_id(invoice_ids)
            if (ident := _row_id(row)) is not None
        }
        notes: dict[str, list[FoundNote]] = {ident: [] for ident in rows}
        if rows:
            for attachable in self.client.attachables_on("Invoice", rows):
                found = mapping.attachable_note(attachable)
                if found is None:
                    continue  # a file, not a note
                note, linked = found
                for ident in linked:
                    if ident in notes:
                        notes[ident].append(note)
        trails: dict[str, Trail] = {}
        for ident, row in rows.items():
            sent = mapping.sent_email(row)
            trails[ident] = Trail(
                notes=tuple(notes[ident]),
                emails=(sent,) if sent is not None else (),
                # QBO's DeliveryInfo records every email it sends of the invoice (the last one)
                emails_recorded=True,
            )
        return trails

    # -- promised dates ----------------------------------------------------------------------------
    def expect_payment(self, invoice_id: str, day: date | None, *, key: str) -> bool:
        # QBO has no promised-date field; the note written with the promise is the record.
        return False
