"""The store against the sandbox's own books, field by field: what end-to-end tests compare."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from arsync.domain import Kind
from arsync.sandbox import Sandbox
from arsync.store import Store

View = dict[str, dict[str, dict[str, Any]]]

_XERO_STATUS = {
    "DRAFT": "draft",
    "SUBMITTED": "draft",
    "AUTHORISED": "open",
    "PAID": "paid",
    "VOIDED": "voided",
}


def expected(sandbox: Sandbox, platform: str, tenant: str) -> View:
    """What the store should hold for one company, from the sandbox's books."""
    return _qbo(sandbox, tenant) if platform == "qbo" else _xero(sandbox, tenant)


def _d(value: Decimal) -> str:
    return f"{Decimal(value):.2f}"


def _qbo(sandbox: Sandbox, realm: str) -> View:
    company = sandbox.qbo.company(realm)
    invoices = {}
    for inv in company.invoices.values():
        voided = inv.total == 0 and inv.private_note.startswith("Voided")
        invoices[str(inv.id)] = {
            "number": inv.doc_number,
            "customer_id": str(inv.customer_id),
            "issue_date": inv.txn_date,
            "due_date": inv.due_date,
            "currency": inv.currency,
            "total": _d(inv.total),
            "balance": _d(inv.balance),
            "status": "voided" if voided else ("paid" if inv.balance == 0 else "open"),
            "sent": inv.email_status == "EmailSent",
        }
    customers = {
        str(c.id): {"name": c.display_name, "email": c.email or None, "active": c.active}
        for c in company.customers.values()
    }
    payments = {}
    for p in company.payments.values():
        applied: dict[str, Decimal] = {}
        for line in p.lines:
            if line.txn_type == "Invoice":
                applied[str(line.txn_id)] = applied.get(str(line.txn_id), Decimal(0)) + line.amount
        payments[str(p.id)] = {
            "amount": _d(p.total),
            "unapplied": _d(p.unapplied),
            "allocations": sorted((k, _d(v)) for k, v in applied.items()),
        }
    credits = {
        str(c.id): {"total": _d(c.total), "remaining": _d(c.remaining)}
        for c in company.credits.values()
    }
    return {"invoice": invoices, "customer": customers, "payment": payments, "credit": credits}


def _xero(sandbox: Sandbox, tenant: str) -> View:
    org = sandbox.xero.org(tenant)
    invoices = {
        inv.invoice_id: {
            "number": inv.number,
            "customer_id": inv.contact.contact_id,
            "issue_date": inv.date,
            "due_date": inv.due_date,
            "currency": inv.currency,
            "total": _d(inv.total),
            "balance": _d(inv.amount_due),
            "status": _XERO_STATUS[inv.status],
            "sent": inv.sent,
        }
        for inv in org.invoices.values()
        if inv.type == "ACCREC" and inv.status != "DELETED"
    }
    customers = {
        c.contact_id: {"name": c.name, "email": c.email or None, "active": c.status == "ACTIVE"}
        for c in org.contacts.values()
    }
    payments = {
        p.payment_id: {
            "amount": _d(p.amount),
            "allocations": [(p.invoice.invoice_id, _d(p.amount))],
        }
        for p in org.payments.values()
        if p.invoice.type == "ACCREC" and p.status != "DELETED"
    }
    credits = {
        c.credit_note_id: {"total": _d(c.total), "remaining": _d(c.remaining)}
        for c in org.credit_notes.values()
        if c.type == "ACCRECCREDIT" and c.status != "DELETED"
    }
    return {"invoice": invoices, "customer": customers, "payment": payments, "credit": credits}


def actual(store: Store, connector_id: int, like: View) -> View:
    """The store's live (not deleted) records, in the shape and with the fields of `like`."""
    out: View = {}
    for kind in Kind:
        fields = {f for rec in like.get(kind.value, {}).values() for f in rec}
        with store.reading() as tx:
            records = tx.records.live(connector_id, kind)
        out[kind.value] = {}
        for ext_id, record in records.items():
            rec: dict[str, Any] = {}
            for f in fields:
                value = getattr(record, f)
                if f == "allocations":
                    value = sorted((a.invoice_id, _d(a.amount)) for a in value)
                elif isinstance(value, Decimal):
                    value = _d(value)
                elif f == "status":
                    value = str(value)
                rec[f] = value
            out[kind.value][ext_id] = rec
    return out


def differences(want: View, got: View) -> list[str]:
    """Human-readable differences (empty when the store equals the books)."""
    problems = []
    for kind, records in want.items():
        have = got.get(kind, {})
        for ext_id in sorted(set(records) - set(have)):
            problems.append(f"{kind} {ext_id}: missing from the store")
        for ext_id in sorted(set(have) - set(records)):
            problems.append(f"{kind} {ext_id}: in the store, not in the books")
        for ext_id in sorted(set(records) & set(have)):
            for field, value in records[ext_id].items():
                if have[ext_id].get(field) != value:
                    problems.append(
                        f"{kind} {ext_id}.{field}: store {have[ext_id].get(field)!r}, "
                        f"books {value!r}"
                    )
    return problems
