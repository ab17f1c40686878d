"""The portal's exception base."""


class PortalError(Exception):
    """Base of every error raised by the portal package."""


class TenancyError(PortalError):
    """A model was queried through the tenant filter without a rule for it (programming error: fail closed)."""


class ProvisioningError(PortalError):
    """A provisioning request the data cannot satisfy (no free IC slot, no DNIS left...)."""
