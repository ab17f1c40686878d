"""The provisioning core's one exception."""

from __future__ import annotations

INVALID = "invalid"
"""A value breaks a rule (a name, a number, a PIN, a time zone)."""
EXISTS = "exists"
"""The name, number or username is already someone else's."""
LIMIT = "limit"
"""A limit is reached: IC slots, free PINs, ad hoc numbers."""
UNKNOWN = "unknown"
"""Something named in the request does not exist (a company, a group to leave)."""


class ProvisioningError(Exception):
    """A provisioning request breaks a rule; ``message`` says which, fit for an SMS reply and a form.

    ``message`` carries no front door's wording: no command word, no option name. The SMS commands put
    their word in front (``UC: ...``), the portal shows it under ``field``, the CLI prefixes the option
    that ``field`` stands for. ``field`` names the input at fault (``"nickname"``, ``"phone"``,
    ``"mobile"``, ``"username"``...) or is ``""``; ``code`` is one of :data:`INVALID`, :data:`EXISTS`,
    :data:`LIMIT`, :data:`UNKNOWN`, for a front door that adds its own hint ("use UE to edit").
    """

    def __init__(self, message: str, *, field: str = "", code: str = INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
