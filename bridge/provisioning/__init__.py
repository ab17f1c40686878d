"""The one core of provisioning rules: contacts, groups, Instant Conferences, rooms, subscribers, companies.

The SMS commands (``bridge.commands``), the portal (``web``), the CLI (``bridge.cli``) and the demo loader
(``bridge.demo``) all create and edit through these functions, so a rule lives in one place and every
front door refuses the same request with the same words.

Every function works on the SQLAlchemy session it is given, flushes and never commits: the caller owns
the transaction (and rolls back after an error). Each checks everything before it changes anything. A
broken rule raises :class:`ProvisioningError`, whose ``message`` fits an SMS and a form and whose
``field`` names the input at fault. Pure in the STYLE.md sense: no sockets, no clock, no globals.

Modules by object: :mod:`.names` (name rules), :mod:`.contacts` (contacts and groups),
:mod:`.conferences` (IC slots, DNIS, PINs, members), :mod:`.rooms`, :mod:`.accounts` (companies,
subscribers, portal logins), :mod:`.lifecycle` (suspend, resume, delete a subscriber), :mod:`.audit` (the
API changes' audit log).
"""

from __future__ import annotations

from bridge.provisioning.accounts import (
    check_balance,
    check_email,
    check_username,
    find_company,
    hash_password,
    save_account,
    save_company,
    save_subscriber,
)
from bridge.provisioning.conferences import (
    assign_ic,
    check_adhoc,
    common_dnis,
    create_ic,
    find_ic,
    free_slot,
    generate_pin,
    load_configured_dnis,
    load_dnis,
    regenerate_pins,
    set_ic_members,
    update_ic,
)
from bridge.provisioning.contacts import (
    GroupChanges,
    Member,
    check_group_name,
    delete_contact,
    delete_group,
    find_contact,
    find_group,
    group_members,
    groups_within,
    save_contact,
    save_group,
)
from bridge.provisioning.errors import EXISTS, INVALID, LIMIT, UNKNOWN, ProvisioningError
from bridge.provisioning.lifecycle import (
    delete_subscriber,
    resume_subscriber,
    set_subscriber_status,
    suspend_subscriber,
)
from bridge.provisioning.names import is_name, name_key, sort_key
from bridge.provisioning.rooms import add_room, delete_room, load_rooms

__all__ = [
    "EXISTS",
    "INVALID",
    "LIMIT",
    "UNKNOWN",
    "GroupChanges",
    "Member",
    "ProvisioningError",
    "add_room",
    "assign_ic",
    "check_adhoc",
    "check_balance",
    "check_email",
    "check_group_name",
    "check_username",
    "common_dnis",
    "create_ic",
    "delete_contact",
    "delete_group",
    "delete_room",
    "delete_subscriber",
    "find_company",
    "find_contact",
    "find_group",
    "find_ic",
    "free_slot",
    "generate_pin",
    "group_members",
    "groups_within",
    "hash_password",
    "is_name",
    "load_configured_dnis",
    "load_dnis",
    "load_rooms",
    "name_key",
    "regenerate_pins",
    "resume_subscriber",
    "save_account",
    "save_company",
    "save_contact",
    "save_group",
    "save_subscriber",
    "set_ic_members",
    "set_subscriber_status",
    "sort_key",
    "suspend_subscriber",
    "update_ic",
]
