"""A faithful simulation of QuickBooks Online and Xero, served over real HTTP."""

from arsync.sandbox.clock import SandboxClock
from arsync.sandbox.core import Sandbox, SandboxSettings
from arsync.sandbox.faults import FaultKind, FaultPlan, FaultRule
from arsync.sandbox.ledger import Ledger, LedgerEntry
from arsync.sandbox.server import SandboxServer

__all__ = [
    "FaultKind",
    "FaultPlan",
    "FaultRule",
    "Ledger",
    "LedgerEntry",
    "Sandbox",
    "SandboxClock",
    "SandboxServer",
    "SandboxSettings",
]
