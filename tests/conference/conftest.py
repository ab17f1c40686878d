"""Shares test_service's seeded database (``factory``) with the other service tests (test_billing)."""

from tests.conference.test_service import factory  # noqa: F401
