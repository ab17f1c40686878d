"""The one seam between the provisioning APIs and high availability (``bridge.ha``, not wired in yet).

The CRM XML API and the REST API's writes run only on the active node of an HA pair: before acting they
ask :func:`is_active`; on a standby the CRM gets the ``NOT_ACTIVE`` negative acknowledgement and REST
clients a ``503`` problem, both naming :func:`active_node` so the client can go there.

Today the engine has no roles: every node is active. When ``bridge.ha`` runs, these two functions read the
role it publishes (e.g. the engine writes its role and the peer's address into the replicated database or
a file under ``data_dir`` on every transition) -- nothing else in the APIs has to change. A change the CRM
was acknowledged is committed before the acknowledgement is sent, so it survives a failover whenever the
database replication is synchronous (PostgreSQL ``synchronous_commit`` with the peer healthy, DESIGN.md).
"""

from __future__ import annotations


def is_active() -> bool:
    """This node may change provisioning data now (the HA role is ACTIVE, or there is no HA)."""
    return True


def active_node() -> str:
    """Where the active node is (``host:port`` of its API), when this one is not; empty when unknown."""
    return ""
