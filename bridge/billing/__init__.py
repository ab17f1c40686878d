"""Billing: rating, prepaid balances and concurrent-call limits (empty so far: the prepaid launch check
lives in the conference service until rating arrives)."""
