"""Simulated Xero."""
