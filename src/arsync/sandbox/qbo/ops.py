"""Changes to a QBO company, as QBO makes them: business events and API writes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from arsync.sandbox.qbo import wire
from arsync.sandbox.qbo.model import (
    MAX_AMOUNT,
    ZERO,
    Attachable,
    Company,
    CreditMemo,
    Customer,
    CustomerType,
    Invoice,
    Line,
    Payment,
    PaymentLine,
    Tombstone,
    clean_text,
    money,
)
from arsync.sandbox.qbo.wire import QboFault

PRIVATE_NOTE_MAX = 4000
ATTACHABLE_NOTE_MAX = 2000
CUSTOMER_NOTES_MAX = 2000
#: CustomerType.Name (Intuit documents no length: 100 is the sandbox's bound)
CUSTOMER_TYPE_NAME_MAX = 100
#: BillAddr.Country and CountrySubDivisionCode, as Intuit's reference bounds them
COUNTRY_MAX = 255
REGION_MAX = 255
DOC_NUMBER_MAX = 21
EMAIL_STATUSES = ("NotSet", "NeedToSend", "EmailSent")
#: entity types an Attachable may point at, as QBO spells them
ATTACHABLE_TARGETS = {
    "invoice": "Invoice",
    "customer": "Customer",
    "payment": "Payment",
    "creditmemo": "CreditMemo",
}


def bump(company: Company, rec: Any, now: datetime) -> None:
    rec.sync += 1
    # LastUpdatedTime never goes backwards, even when the sandbox clock is set back.
    rec.updated = max(now, rec.updated)
    company.touched()


def get_invoice(company: Company, ident: object) -> Invoice:
    inv = company.invoices.get(_int(ident))
    if inv is None:
        raise wire.not_found("Invoice", str(ident))
    return inv


def get_customer(company: Company, ident: object) -> Customer:
    cust = company.customers.get(_int(ident))
    if cust is None:
        raise wire.not_found("Customer", str(ident))
    return cust


def get_customer_type(company: Company, ident: object) -> CustomerType:
    ctype = company.customer_types.get(_int(ident))
    if ctype is None:
        raise wire.not_found("CustomerType", str(ident))
    return ctype


def _int(ident: object) -> int:
    try:
        return int(str(ident))
    except ValueError:
        return -1


def _date(value: object, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as err:
        raise ValueError(f"{what}: not an ISO date: {value!r}") from err


# -- reading client bodies: the wrong JSON type is a validation fault, never a crash -------------
def invalid(name: str, detail: str = "") -> QboFault:
    return wire.validation(
        "2010",
        "Request has invalid or unsupported property",
        detail or f"Property Name:{name} specified is unsupported or invalid",
        element=name,
    )


def too_long(name: str, limit: int, length: int) -> QboFault:
    return wire.validation(
        "2040",
        "String length is either shorter or longer than supported by specification",
        "String length specified does not match the supported length. "
        f"Min:0 Max:{limit} supplied length:{length}",
        element=name,
    )


def text_field(body: dict[str, Any], key: str, limit: int | None = None) -> str | None:
    """A string property (numbers are read as their text, as Intuit's deserialiser does)."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise invalid(key)
    text = clean_text(value)
    if limit is not None and len(text) > limit:
        raise too_long(key, limit, len(text))
    return text


def obj_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(key)
    return value


def bool_field(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid(key)


def day_field(body: dict[str, Any], key: str) -> date | None:
    raw = body.get(key)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(str(raw))
    except ValueError as err:
        raise invalid(key, f"Property Name:{key} value {raw} is not a date") from err


def email_field(body: dict[str, Any], key: str) -> str | None:
    ref = obj_field(body, key)
    return (text_field(ref, "Address") or None) if ref is not None else None


def _recompute_customer(company: Company, customer_id: int) -> None:
    cust = company.customers.get(customer_id)
    if cust is None:
        return
    owed = sum((i.balance for i in company.invoices.values() if i.customer_id == customer_id), ZERO)
    credit = sum(
        (c.remaining for c in company.credits.values() if c.customer_id == customer_id), ZERO
    )
    # Money received but not applied (e.g. from a voided invoice) also lowers what is owed.
    unapplied = sum(
        (p.unapplied for p in company.payments.values() if p.customer_id == customer_id), ZERO
    )
    cust.balance = owed - credit - unapplied


# -- business events -----------------------------------------------------------------------------
def pay(
    company: Company, inv: Invoice, amount: Decimal | None, day: date | None, now: datetime
) -> Payment:
    if inv.balance <= 0:
        raise ValueError(f"invoice {inv.id} has nothing left to pay")
    amount = inv.balance if amount is None else money(amount)
    if amount <= 0 or amount > inv.balance:
        raise ValueError(f"payment amount must be above 0 and at most the balance {inv.balance}")
    payment = Payment(
        id=company.txn_id(),
        sync=0,
        txn_date=day or company.local_day(now),
        customer_id=inv.customer_id,
        currency=inv.currency,
        total=amount,
        unapplied=ZERO,
        lines=[PaymentLine(amount, inv.id, "Invoice")],
        reference=f"Payment {inv.doc_number}",
        created=now,
        updated=now,
    )
    company.payments[payment.id] = payment
    inv.balance -= amount
    inv.linked.append((payment.id, "Payment"))
    bump(company, inv, now)
    company.customers[inv.customer_id].balance -= amount
    return payment


def credit(
    company: Company, inv: Invoice, amount: Decimal | None, now: datetime
) -> tuple[CreditMemo, Payment]:
    if inv.balance <= 0:
        raise ValueError(f"invoice {inv.id} has nothing left to credit")
    amount = inv.balance if amount is None else money(amount)
    if amount <= 0 or amount > inv.balance:
        raise ValueError(f"credit amount must be above 0 and at most the balance {inv.balance}")
    first = inv.lines[0].description if inv.lines else "Services"
    cm = CreditMemo(
        id=company.txn_id(),
        sync=0,
        doc_number=f"CM{2000 + len(company.credits) + 1}",
        txn_date=company.local_day(now),
        customer_id=inv.customer_id,
        currency=inv.currency,
        lines=[Line("Credit: " + first, Decimal(1), amount, amount)],
        total=amount,
        remaining=ZERO,
        created=now,
        updated=now,
    )
    company.credits[cm.id] = cm
    payment = company._credit_application(inv, cm, amount, now, cm.txn_date)
    inv.balance -= amount
    inv.updated = max(inv.updated, now)
    company.touched()
    company.customers[inv.customer_id].balance -= amount
    return cm, payment


def _unlink_payments(company: Company, inv: Invoice, now: datetime) -> None:
    """QBO keeps payments of a voided or deleted invoice, now unapplied."""
    for pay_id, kind in inv.linked:
        payment = company.payments.get(pay_id)
        if kind != "Payment" or payment is None:
            continue
        mine = [ln for ln in payment.lines if ln.txn_type == "Invoice" and ln.txn_id == inv.id]
        if not mine:
            continue
        applied = sum((ln.amount for ln in mine), ZERO)
        payment.lines = [ln for ln in payment.lines if ln not in mine]
        credit_lines = [ln for ln in payment.lines if ln.txn_type == "CreditMemo"]
        if payment.total == 0 and credit_lines:
            # A credit application: the credit memo gets its credit back.
            for ln in credit_lines:
                cm = company.credits.get(ln.txn_id)
                if cm is not None:
                    cm.remaining += ln.amount
                    bump(company, cm, now)
            payment.lines = [ln for ln in payment.lines if ln.txn_type != "CreditMemo"]
        else:
            payment.unapplied += applied
        bump(company, payment, now)
    inv.linked = []


def void(company: Company, inv: Invoice, now: datetime) -> None:
    if inv.private_note == "Voided" and inv.total == 0:
        raise ValueError(f"invoice {inv.id} is already voided")
    _unlink_payments(company, inv, now)
    company._zero_for_void(inv)
    bump(company, inv, now)
    _recompute_customer(company, inv.customer_id)


def delete_invoice(company: Company, inv: Invoice, now: datetime) -> None:
    _unlink_payments(company, inv, now)
    del company.invoices[inv.id]
    company.tombstones.append(Tombstone("Invoice", inv.id, max(now, inv.updated)))
    company.touched()
    _recompute_customer(company, inv.customer_id)


def _set_total(company: Company, inv: Invoice) -> None:
    total = sum((ln.amount for ln in inv.lines), ZERO)
    applied = inv.total - inv.balance
    if total < applied:
        raise ValueError(f"the new total {total} is below what was already applied ({applied})")
    inv.total = total
    inv.balance = total - applied


def edit(company: Company, inv: Invoice, event: dict[str, Any], now: datetime) -> None:
    known = {"type", "invoice", "due_date", "amount", "private_note"}
    unknown = set(event) - known
    if unknown:
        raise ValueError(f"edit: unknown keys {', '.join(sorted(unknown))}")
    if not (set(event) & {"due_date", "amount", "private_note"}):
        raise ValueError("edit needs due_date, amount or private_note")
    if "due_date" in event:
        inv.due_date = _date(event["due_date"], "due_date")
    if "private_note" in event:
        inv.private_note = clean_text(event["private_note"] or "", PRIVATE_NOTE_MAX)
    if "amount" in event:
        amount = money(event["amount"])
        if amount <= 0:
            raise ValueError("amount must be above 0")
        first = inv.lines[0]
        old = (first.qty, first.unit_price, first.amount)
        first.qty, first.unit_price, first.amount = Decimal(1), amount, amount
        try:
            _set_total(company, inv)
        except ValueError:
            first.qty, first.unit_price, first.amount = old
            raise
    bump(company, inv, now)
    _recompute_customer(company, inv.customer_id)


def create_invoice(
    company: Company,
    customer: Customer,
    lines: list[Line],
    now: datetime,
    *,
    terms_days: int = 30,
    txn_date: date | None = None,
    due_date: date | None = None,
    doc_number: str | None = None,
    bill_email: str | None = None,
    private_note: str = "",
) -> Invoice:
    if not lines:
        raise ValueError("an invoice needs at least one line")
    day = txn_date or company.local_day(now)
    total = sum((ln.amount for ln in lines), ZERO)
    if doc_number is None:
        doc_number = str(company.next_doc)
        company.next_doc += 1
    inv = Invoice(
        id=company.txn_id(),
        sync=0,
        doc_number=doc_number,
        txn_date=day,
        due_date=due_date or day + timedelta(days=terms_days),
        customer_id=customer.id,
        currency=customer.currency,
        lines=lines,
        total=total,
        balance=total,
        term=company.term_for(terms_days),
        created=now,
        updated=now,
        bill_email=bill_email if bill_email is not None else customer.email,
        private_note=private_note,
    )
    company.invoices[inv.id] = inv
    customer.balance += total
    company.touched()
    return inv


def set_email(company: Company, cust: Customer, email: str | None, now: datetime) -> None:
    cust.email = clean_text(email) if email else None
    bump(company, cust, now)


# -- API writes ----------------------------------------------------------------------------------
def send_invoice(company: Company, inv: Invoice, send_to: str | None, now: datetime) -> str:
    if send_to is not None:
        if "@" not in send_to or send_to.startswith("@") or send_to.endswith("@"):
            raise wire.validation(
                "2050",
                "Invalid Email Address format",
                f"Supplied value:{send_to}",
                element="sendTo",
            )
        inv.bill_email = clean_text(send_to)
    if not inv.bill_email:
        # QBO's refusal as integrators report it: a 400 ValidationFault, code 6000.
        raise wire.business(
            "You must enter the email address for this customer in order to email this invoice."
        )
    inv.email_status = "EmailSent"
    inv.delivery_time = now
    bump(company, inv, now)
    return inv.bill_email


def add_attachable(company: Company, body: dict[str, Any], now: datetime) -> Attachable:
    refs_in = body.get("AttachableRef") or []
    if not isinstance(refs_in, list):
        raise invalid("AttachableRef")
    note = text_field(body, "Note", ATTACHABLE_NOTE_MAX)
    file_name = text_field(body, "FileName")
    if not note and not file_name:
        raise wire.validation(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter Note or FileName is missing in the request",
            element="Note",
        )
    if file_name and not note:
        raise invalid("FileName", "File uploads go to /upload; this sandbox stores notes only")
    refs: list[dict[str, Any]] = []
    for raw in refs_in:
        if not isinstance(raw, dict):
            raise invalid("AttachableRef")
        entity_ref = obj_field(raw, "EntityRef") or {}
        kind = ATTACHABLE_TARGETS.get(str(entity_ref.get("type", "")).lower())
        value = str(entity_ref.get("value", ""))
        if kind is None:
            raise wire.validation(
                "6050",
                "The entity reference type is unsupported for Attachable",
                f"The entity reference type {entity_ref.get('type')} is unsupported for Attachable",
            )
        if _int(value) not in company.table(kind):
            raise wire.not_found(kind, value)
        include = bool_field(raw, "IncludeOnSend")
        refs.append({"EntityRef": {"type": kind, "value": value}, "IncludeOnSend": bool(include)})
    att = Attachable(company.next_attachable, 0, note or "", refs, now, now)
    company.next_attachable += 1
    company.attachables[att.id] = att
    company.touched()
    return att


def _check_sync(entity: str, rec: Any, body: dict[str, Any]) -> None:
    token = body.get("SyncToken")
    if token is None or token == "":
        raise wire.validation(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter SyncToken is missing in the request",
            element="SyncToken",
        )
    if str(token) != str(rec.sync):
        raise wire.stale(entity)


def update_invoice(company: Company, inv: Invoice, body: dict[str, Any], now: datetime) -> None:
    """Sparse or full update of the fields a client may change.

    Everything is read and checked before anything changes, so a refused update leaves the
    invoice exactly as it was.
    """
    _check_sync("Invoice", inv, body)
    sparse = bool_field(body, "sparse") or False
    changes: dict[str, Any] = {}
    if "PrivateNote" in body or not sparse:
        changes["private_note"] = text_field(body, "PrivateNote", PRIVATE_NOTE_MAX) or ""
    due = day_field(body, "DueDate")
    if due is not None:
        changes["due_date"] = due
    if "BillEmail" in body or not sparse:
        changes["bill_email"] = email_field(body, "BillEmail")
    if "CustomerMemo" in body or not sparse:
        memo = obj_field(body, "CustomerMemo")
        changes["customer_memo"] = (text_field(memo, "value") or None) if memo else None
    if body.get("EmailStatus") is not None:
        status = body["EmailStatus"]
        if status not in EMAIL_STATUSES:
            raise invalid("EmailStatus")
        changes["email_status"] = status
    if "Line" in body:
        lines = parse_lines(body["Line"])
        total = sum((ln.amount for ln in lines), ZERO)
        applied = inv.total - inv.balance
        if total < applied:
            raise wire.business(
                f"the new total {total} is below what was already applied ({applied})"
            )
        changes.update(lines=lines, total=total, balance=total - applied)
    for attr, value in changes.items():
        setattr(inv, attr, value)
    bump(company, inv, now)
    _recompute_customer(company, inv.customer_id)


def _number(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise invalid(name, f"Property Name:{name} is not a number")
    try:
        number = Decimal(str(value))
    except ArithmeticError as err:
        raise invalid(name, f"Property Name:{name} is not a number") from err
    if not number.is_finite() or abs(number) > MAX_AMOUNT:
        raise invalid(name, f"Property Name:{name} is not a number in range")
    return number


def parse_lines(raw: object) -> list[Line]:
    if not isinstance(raw, list):
        raise invalid("Line")
    lines: list[Line] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("DetailType") != "SalesItemLineDetail":
            continue  # subtotal lines are computed by QBO, never taken from the client
        detail = obj_field(item, "SalesItemLineDetail") or {}
        amount = money(_number(item.get("Amount", 0), "Amount"))
        qty = _number(detail.get("Qty", 1), "Qty")
        price = _number(detail.get("UnitPrice", amount), "UnitPrice")
        if detail.get("UnitPrice") is not None:
            try:
                product = money(qty * price)
            except ValueError as err:
                raise invalid("Amount", "Property Name:Amount is not a number in range") from err
            if product != amount:
                raise wire.validation(
                    "6070",
                    "Amount calculation incorrect in the request",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                )
        item_ref = obj_field(detail, "ItemRef") or {}
        desc = text_field(item, "Description") or text_field(item_ref, "name") or "Services"
        lines.append(Line(desc, qty, price, amount))
    if not lines:
        raise wire.validation(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter Line is missing in the request",
        )
    return lines


def create_invoice_from_body(company: Company, body: dict[str, Any], now: datetime) -> Invoice:
    ref = body.get("CustomerRef")
    if not isinstance(ref, dict) or not ref.get("value"):
        raise wire.validation(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter CustomerRef is missing in the request",
            element="CustomerRef",
        )
    customer = get_customer(company, ref["value"])
    if not customer.active:
        # Intuit's 610 detail says it: "Something you're trying to use has been made inactive".
        raise wire.not_found("Customer", str(customer.id))
    lines = parse_lines(body.get("Line"))
    total = sum((ln.amount for ln in lines), ZERO)
    if total < 0:
        raise wire.business("Transaction amount must be zero or greater.")
    return create_invoice(
        company,
        customer,
        lines,
        now,
        txn_date=day_field(body, "TxnDate"),
        due_date=day_field(body, "DueDate"),
        doc_number=text_field(body, "DocNumber", DOC_NUMBER_MAX) or None,
        bill_email=email_field(body, "BillEmail"),
        private_note=text_field(body, "PrivateNote", PRIVATE_NOTE_MAX) or "",
    )


def _name_taken(company: Company, name: str, but: int | None = None) -> bool:
    lowered = name.lower()
    return any(
        c.display_name.lower() == lowered and c.id != but for c in company.customers.values()
    )


def duplicate_name(name: str) -> QboFault:
    return wire.validation(
        "6240", "Duplicate Name Exists Error", f"The name supplied already exists. : {name}"
    )


def create_customer(company: Company, body: dict[str, Any], now: datetime) -> Customer:
    given = text_field(body, "GivenName") or ""
    family = text_field(body, "FamilyName") or ""
    display = text_field(body, "DisplayName") or " ".join(p for p in (given, family) if p)
    if not display:
        raise wire.validation(
            "6080",
            "No Name Provided",
            "Title, GivenName, MiddleName, "
            "FamilyName, DisplayName, Suffix - one of these must be non-empty",
        )
    if _name_taken(company, display):
        raise duplicate_name(display)
    phone = obj_field(body, "PrimaryPhone") or {}
    addr = obj_field(body, "BillAddr") or {}
    currency = obj_field(body, "CurrencyRef") or {}
    active = bool_field(body, "Active")
    cust = Customer(
        id=company.next_customer,
        sync=0,
        display_name=display,
        company_name=text_field(body, "CompanyName") or display,
        given_name=given,
        family_name=family,
        email=email_field(body, "PrimaryEmailAddr"),
        phone=text_field(phone, "FreeFormNumber") or None,
        city=text_field(addr, "City") or "Springfield",
        currency=text_field(currency, "value") or company.currency,
        created=now,
        updated=now,
        active=True if active is None else active,
        notes=text_field(body, "Notes", CUSTOMER_NOTES_MAX) or "",
        country=text_field(addr, "Country", COUNTRY_MAX) or "",
        region=text_field(addr, "CountrySubDivisionCode", REGION_MAX) or "",
        type_id=type_ref(company, body),
    )
    company.next_customer += 1
    company.customers[cust.id] = cust
    company.touched()
    return cust


def update_customer(company: Company, cust: Customer, body: dict[str, Any], now: datetime) -> None:
    """Read and check everything first: a refused update changes nothing."""
    _check_sync("Customer", cust, body)
    sparse = bool_field(body, "sparse") or False
    changes: dict[str, Any] = {}
    name = text_field(body, "DisplayName")
    if name:
        if _name_taken(company, name, but=cust.id):
            raise duplicate_name(name)
        changes["display_name"] = name
    for key, attr, limit in (
        ("CompanyName", "company_name", None),
        ("GivenName", "given_name", None),
        ("FamilyName", "family_name", None),
        ("Notes", "notes", CUSTOMER_NOTES_MAX),
    ):
        if key in body or not sparse:
            changes[attr] = text_field(body, key, limit) or ""
    if "CustomerTypeRef" in body or not sparse:
        changes["type_id"] = type_ref(company, body, keep=cust.type_id)
    addr = obj_field(body, "BillAddr")
    if addr is not None:
        # Only a BillAddr that is sent changes the address (a full update without one keeps it).
        changes["city"] = text_field(addr, "City") or cust.city
        changes["country"] = text_field(addr, "Country", COUNTRY_MAX) or ""
        changes["region"] = text_field(addr, "CountrySubDivisionCode", REGION_MAX) or ""
    if "PrimaryEmailAddr" in body or not sparse:
        changes["email"] = email_field(body, "PrimaryEmailAddr")
    if "PrimaryPhone" in body or not sparse:
        phone = obj_field(body, "PrimaryPhone")
        changes["phone"] = (text_field(phone, "FreeFormNumber") or None) if phone else None
    active = bool_field(body, "Active")
    if active is not None:
        changes["active"] = active
    for attr, value in changes.items():
        setattr(cust, attr, value)
    bump(company, cust, now)


def type_ref(company: Company, body: dict[str, Any], keep: int | None = None) -> int | None:
    """The CustomerTypeRef of a Customer body: an active type of this company (or `keep`, the
    type the customer already has, even if inactive since), or None."""
    ref = obj_field(body, "CustomerTypeRef")
    value = text_field(ref, "value") if ref is not None else None
    if not value:
        return None
    ctype = company.customer_types.get(_int(value))
    if ctype is None or not (ctype.active or ctype.id == keep):
        raise wire.validation(
            "2500",
            "Invalid Reference Id",
            f"Invalid Reference Id : CustomerTypeRef {value} does not exist or is inactive",
            element="CustomerTypeRef",
        )
    return ctype.id


# -- what a bookkeeper does in QuickBooks itself (the control plane's events) ------------------
def create_customer_type(
    company: Company, name: object, active: object, now: datetime
) -> CustomerType:
    text = _type_name(company, name)
    if not isinstance(active, bool):
        raise ValueError("active must be true or false")
    ctype = CustomerType(company.next_customer_type, 0, text, active, now, now)
    company.next_customer_type += 1
    company.customer_types[ctype.id] = ctype
    company.touched()
    return ctype


def edit_customer_type(
    company: Company, ctype: CustomerType, event: dict[str, Any], now: datetime
) -> None:
    """A type renamed or made (in)active; its customers keep it (and their own times)."""
    name = _type_name(company, event["name"], but=ctype.id) if "name" in event else ctype.name
    active = event.get("active", ctype.active)
    if not isinstance(active, bool):
        raise ValueError("active must be true or false")
    ctype.name, ctype.active = name, active
    bump(company, ctype, now)


def _type_name(company: Company, name: object, but: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a customer type needs a name (non-empty text)")
    text = clean_text(name.strip())
    if len(text) > CUSTOMER_TYPE_NAME_MAX:
        raise ValueError(f"a customer type's name is at most {CUSTOMER_TYPE_NAME_MAX} characters")
    lowered = text.lower()
    if any(t.name.lower() == lowered and t.id != but for t in company.customer_types.values()):
        raise ValueError(f"a customer type named {text!r} already exists")
    return text


def edit_customer(company: Company, cust: Customer, event: dict[str, Any], now: datetime) -> None:
    """Notes, customer type and billing country/region, as typed in QuickBooks' customer form.

    Everything is checked before anything changes; the customer's SyncToken and LastUpdatedTime
    move, so queries and CDC return it.
    """
    changes: dict[str, Any] = {}
    if "notes" in event:
        notes = event["notes"]
        if notes is not None and not isinstance(notes, str):
            raise ValueError("notes must be text or null")
        text = clean_text(notes or "")
        if len(text) > CUSTOMER_NOTES_MAX:
            raise ValueError(f"notes are at most {CUSTOMER_NOTES_MAX} characters")
        changes["notes"] = text
    if "customer_type" in event:
        raw = event["customer_type"]
        if raw is None:
            changes["type_id"] = None
        else:
            ctype = company.customer_types.get(_int(raw))
            if ctype is None:
                raise ValueError(f"no customer type {raw!r} in this company")
            if not ctype.active:
                raise ValueError(
                    f"customer type {ctype.name!r} is inactive: QuickBooks offers it no more"
                )
            changes["type_id"] = ctype.id
    for key, limit in (("country", COUNTRY_MAX), ("region", REGION_MAX)):
        if key in event:
            value = event[key]
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be text or null")
            text = clean_text(value or "").strip()
            if len(text) > limit:
                raise ValueError(f"{key} is at most {limit} characters")
            changes[key] = text
    for attr, value in changes.items():
        setattr(cust, attr, value)
    bump(company, cust, now)


def update_attachable(
    company: Company, att: Attachable, body: dict[str, Any], now: datetime
) -> None:
    _check_sync("Attachable", att, body)
    if "Note" in body:
        att.note = text_field(body, "Note", ATTACHABLE_NOTE_MAX) or ""
    bump(company, att, now)


def delete_record(
    company: Company, entity: str, ident: object, body: dict[str, Any], now: datetime
) -> None:
    table = company.table(entity)
    rec = table.get(_int(ident))
    if rec is None:
        raise wire.not_found(entity, str(ident))
    _check_sync(entity, rec, body)
    if entity == "Invoice":
        delete_invoice(company, rec, now)
        return
    if entity != "Attachable":
        raise wire.validation(
            "2010",
            "Request has invalid or unsupported property",
            f"Operation delete is not supported for {entity} in this sandbox",
        )
    del table[rec.id]
    company.tombstones.append(Tombstone(entity, rec.id, max(now, rec.updated)))
    company.touched()
