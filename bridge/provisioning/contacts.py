"""A subscriber's contacts ("users") and groups: names, numbers, memberships, nesting.

Rules, the same from every front door:

- nicknames and group names follow :mod:`bridge.provisioning.names` and are unique per subscriber
  under :func:`~bridge.provisioning.names.name_key`, across both kinds: a contact may not take a group's
  name nor a group a contact's, so a name in a command is never ambiguous;
- numbers are stored in E.164;
- groups may contain contacts, numbers and groups, but never themselves, directly or through others;
- deleting a contact or a group removes it from every group and IC that lists it.

Each function checks everything first (reads only) and only then changes the session, so a refused
request leaves nothing half done. Nothing commits; the session is flushed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.db.models import Contact, Group, GroupMember, IcMember
from bridge.phone import PhoneError, to_e164
from bridge.provisioning.errors import EXISTS, UNKNOWN, ProvisioningError
from bridge.provisioning.names import check_name, check_person_name, name_key, shown

Member = Contact | Group | str
"""An IC or group member as provisioning sees it: a contact, a group, or an E.164 number."""


@dataclass
class GroupChanges:
    """What saving a contact did to its groups: joined (with whether the group is new) and left."""

    joined: list[tuple[Group, bool]] = field(default_factory=list)
    left: list[Group] = field(default_factory=list)


# --- look-ups -------------------------------------------------------------------------------------


def find_contact(session: Session, subscriber_id: int, nickname: str) -> Contact | None:
    """The subscriber's contact called ``nickname``, case-insensitively in any script."""
    if nickname.isascii():
        return session.scalars(
            select(Contact).where(
                Contact.subscriber_id == subscriber_id, func.lower(Contact.nickname) == nickname.lower()
            )
        ).first()
    found = _match_name(
        session.execute(select(Contact.id, Contact.nickname).where(Contact.subscriber_id == subscriber_id)), nickname
    )
    return None if found is None else session.get(Contact, found)


def find_group(session: Session, subscriber_id: int, name: str) -> Group | None:
    """The subscriber's group called ``name``, case-insensitively in any script."""
    if name.isascii():
        return session.scalars(
            select(Group).where(Group.subscriber_id == subscriber_id, func.lower(Group.name) == name.lower())
        ).first()
    found = _match_name(session.execute(select(Group.id, Group.name).where(Group.subscriber_id == subscriber_id)), name)
    return None if found is None else session.get(Group, found)


def _match_name(rows: Iterable[tuple[int, str]], name: str) -> int | None:
    """Id of the row whose name is ``name`` under :func:`~bridge.provisioning.names.name_key`.

    Compared here, not in SQL: SQLite's ``lower()`` folds ASCII only (and PostgreSQL's depends on the
    collation), so "ÉQUIPE" would never find "équipe" there. Only non-ASCII names take this path, reading
    two columns of the subscriber's rows; ASCII names keep the SQL comparison, which for ASCII text is
    the same as :func:`name_key`.
    """
    key = name_key(name)
    return next((row_id for row_id, row_name in rows if name_key(row_name) == key), None)


def groups_within(group: Group) -> set[int]:
    """Ids of every group reachable from ``group`` (itself included)."""
    seen: set[int] = set()
    stack = [group]
    while stack:
        current = stack.pop()
        if current.id in seen:
            continue
        seen.add(current.id)
        stack.extend(gm.member_group for gm in current.members if gm.member_group is not None)
    return seen


# --- contacts -------------------------------------------------------------------------------------


def _check_nickname(session: Session, subscriber_id: int, nickname: str, contact: Contact | None) -> str:
    name = check_name(nickname, "nickname", field="nickname")
    if contact is not None and name_key(name) == name_key(contact.nickname):
        return name  # kept, not re-checked: an old clash must not block editing the rest
    other = find_contact(session, subscriber_id, name)
    if other is not None and other is not contact:
        raise ProvisioningError(f"nickname {shown(name)} exists", field="nickname", code=EXISTS)
    if find_group(session, subscriber_id, name) is not None:
        raise ProvisioningError(f"{shown(name)} is a group name; pick another nickname", field="nickname", code=EXISTS)
    return name


def _phone(phone: str, default_country: str) -> str:
    try:
        return to_e164(phone, default_country)
    except PhoneError as exc:
        raise ProvisioningError(str(exc), field="phone") from exc


def _plan_groups(
    session: Session, subscriber_id: int, nickname: str, add: Sequence[str], remove: Sequence[str]
) -> tuple[list[Group | str], list[Group]]:
    """Groups a contact joins (existing, or names of groups to create) and leaves; reads only."""
    joins: list[Group | str] = []
    for name in add:
        group = find_group(session, subscriber_id, name)
        if group is not None:
            joins.append(group)
            continue
        name = check_name(name, "group name", field="groups")
        if name_key(name) == name_key(nickname) or find_contact(session, subscriber_id, name) is not None:
            raise ProvisioningError(f"{shown(name)} is a user's nickname, not a group", field="groups", code=EXISTS)
        joins.append(name)
    leaves: list[Group] = []
    for name in remove:
        group = find_group(session, subscriber_id, name)
        if group is None:
            raise ProvisioningError(f"no such group {shown(name)}", field="groups", code=UNKNOWN)
        leaves.append(group)
    return joins, leaves


def _apply_groups(session: Session, contact: Contact, joins: list[Group | str], leaves: list[Group]) -> GroupChanges:
    changes = GroupChanges()
    for item in joins:
        group = item if isinstance(item, Group) else Group(subscriber_id=contact.subscriber_id, name=item)
        if isinstance(item, str):
            session.add(group)
        changes.joined.append((group, isinstance(item, str)))
        if not any(gm.contact_id == contact.id for gm in group.members):
            position = max((gm.position for gm in group.members), default=-1) + 1
            group.members.append(GroupMember(position=position, contact_id=contact.id))
    for group in leaves:
        for gm in [gm for gm in group.members if gm.contact_id == contact.id]:
            group.members.remove(gm)
        changes.left.append(group)
    session.flush()
    return changes


def save_contact(
    session: Session,
    subscriber_id: int,
    *,
    nickname: str,
    phone: str,
    default_country: str,
    first_name: str = "",
    last_name: str = "",
    contact: Contact | None = None,
    join: Sequence[str] = (),
    leave: Sequence[str] = (),
) -> tuple[Contact, GroupChanges]:
    """Create a contact (``contact=None``) or update ``contact``; it joins the groups named in ``join``
    (creating those that do not exist) and leaves those in ``leave``."""
    name = _check_nickname(session, subscriber_id, nickname, contact)
    number = _phone(phone, default_country)
    first, last = check_person_name(first_name, last_name)
    joins, leaves = _plan_groups(session, subscriber_id, name, join, leave)
    if contact is None:
        contact = Contact(subscriber_id=subscriber_id)
        session.add(contact)
    contact.nickname, contact.phone, contact.first_name, contact.last_name = name, number, first, last
    session.flush()
    return contact, _apply_groups(session, contact, joins, leaves)


def _detach(session: Session, *, contact_id: int | None = None, group_id: int | None = None) -> list[str]:
    """Remove a contact or group from every group and IC that lists it; returns where it was."""
    where: list[str] = []
    if contact_id is not None:
        gm_filter = GroupMember.contact_id == contact_id
        ic_filter = IcMember.contact_id == contact_id
    else:
        gm_filter = GroupMember.member_group_id == group_id
        ic_filter = IcMember.group_id == group_id
    for gm in session.scalars(select(GroupMember).where(gm_filter)).all():
        if gm.group.name not in where:
            where.append(gm.group.name)
        gm.group.members.remove(gm)
    for im in session.scalars(select(IcMember).where(ic_filter)).all():
        where.append(f"IC{im.conference.slot}")
        im.conference.members.remove(im)
    session.flush()
    return where


def delete_contact(session: Session, contact: Contact) -> list[str]:
    """Delete ``contact`` and its memberships; returns the groups and ICs (``IC3``) it was removed from."""
    where = _detach(session, contact_id=contact.id)
    session.delete(contact)
    session.flush()
    return where


# --- groups ---------------------------------------------------------------------------------------


def check_group_name(session: Session, subscriber_id: int, name: str, group: Group | None = None) -> str:
    """``name`` in NFC when ``group`` (``None``: a new group) may be called so (see :func:`save_group`)."""
    name = check_name(name, "group name", field="name")
    if group is not None and name_key(name) == name_key(group.name):
        return name  # kept, not re-checked (see _check_nickname)
    if find_contact(session, subscriber_id, name) is not None:
        raise ProvisioningError(
            f"{shown(name)} is a user's nickname; pick another group name", field="name", code=EXISTS
        )
    other = find_group(session, subscriber_id, name)
    if other is not None and other is not group:
        raise ProvisioningError(f"group {shown(name)} exists", field="name", code=EXISTS)
    return name


def _check_no_loop(group: Group | None, members: Sequence[Member]) -> None:
    if group is None:
        return
    for member in members:
        if not isinstance(member, Group):
            continue
        if member.id == group.id:
            raise ProvisioningError(f"group {shown(group.name)} cannot contain itself", field="members")
        if group.id in groups_within(member):
            raise ProvisioningError(
                f"{shown(member.name)} already contains {shown(group.name)}; that would make a loop", field="members"
            )


def save_group(
    session: Session, subscriber_id: int, *, name: str, members: Sequence[Member], group: Group | None = None
) -> Group:
    """Create a group (``group=None``) or rename ``group`` and replace its members (order kept).

    Members are contacts, groups (no loops) and E.164 numbers, all of ``subscriber_id``: the caller
    resolved them (by name from SMS, by id from the portal's choices).
    """
    name = check_group_name(session, subscriber_id, name, group)
    _check_no_loop(group, members)
    if group is None:
        group = Group(subscriber_id=subscriber_id)
        session.add(group)
    else:
        group.members.clear()
    group.name = name
    session.flush()
    for position, member in enumerate(members):
        if isinstance(member, Contact):
            group.members.append(GroupMember(position=position, contact_id=member.id))
        elif isinstance(member, Group):
            group.members.append(GroupMember(position=position, member_group_id=member.id))
        else:
            group.members.append(GroupMember(position=position, phone=member))
    session.flush()
    return group


def group_members(group: Group) -> list[Member]:
    """``group``'s members in order, as :data:`Member` values."""
    members: list[Member] = []
    for gm in group.members:
        if gm.contact is not None:
            members.append(gm.contact)
        elif gm.member_group is not None:
            members.append(gm.member_group)
        elif gm.phone:
            members.append(gm.phone)
    return members


def delete_group(session: Session, group: Group) -> list[str]:
    """Delete ``group`` (its contacts stay); returns the groups and ICs it was removed from."""
    where = _detach(session, group_id=group.id)
    session.delete(group)
    session.flush()
    return where
