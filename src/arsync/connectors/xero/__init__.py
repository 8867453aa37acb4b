"""Xero connector."""
