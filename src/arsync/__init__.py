"""arsync: collect what small firms are owed, from QuickBooks Online and Xero."""

__version__ = "0.1.0"
