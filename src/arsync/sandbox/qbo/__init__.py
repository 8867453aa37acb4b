"""Simulated QuickBooks Online."""
