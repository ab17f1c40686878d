"""Command handlers: carry out one parsed command for one subscriber over a SQLAlchemy session.

Each handler first resolves and checks everything (reads only), raising :class:`CommandError` with the
reply text, and only then changes the database, so a refused command leaves nothing half done. Nothing
commits; the session is flushed so the caller's transaction sees the changes.

The provisioning rules (names, duplicates, a user named like a group or the reverse, group loops, IC
slots, PINs, the ad hoc limit) live in :mod:`bridge.provisioning`, which the portal and the CLI call
too; a handler resolves the sender's words, calls the core, and puts its command word in front of the
core's message (rendered in printable GSM-7). A target name is looked up as a user first, then as a
group. Groups may contain groups: flattening follows them once each (cycle-safe), iteratively and at
most :data:`MAX_GROUP_DEPTH` levels deep.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.commands import parser as p
from bridge.commands.actions import Action, LaunchConference, SmsBlast
from bridge.commands.errors import CommandError, NestingError
from bridge.commands.help import LIST_LIMIT, SMS_LIMIT, fit_list, fits, help_text, printable_gsm7, quote
from bridge.conference.machine import LegStatus
from bridge.config import Config
from bridge.db.models import (
    ConferenceRun,
    Contact,
    Group,
    GroupMember,
    InstantConference,
    Leg,
    Subscriber,
)
from bridge.provisioning import (
    EXISTS,
    GroupChanges,
    Member,
    ProvisioningError,
    assign_ic,
    check_adhoc,
    check_group_name,
    common_dnis,
    delete_contact,
    find_contact,
    find_group,
    find_ic,
    save_contact,
    save_group,
    set_ic_members,
)
from bridge.provisioning import (
    delete_group as delete_group_row,
)

__all__ = ["MAX_GROUP_DEPTH", "Context", "expand", "find_contact", "find_group", "flatten", "handle", "ic_dial_list"]


@dataclass(frozen=True)
class Context:
    """What a handler works with: the session, the commanding subscriber, the config and the time."""

    session: Session
    subscriber: Subscriber
    config: Config
    now: dt.datetime


Outcome = tuple[str, tuple[Action, ...]]


# --- look-ups ---------------------------------------------------------------------------------------


def refused(prefix: str, exc: ProvisioningError, word: str | None = None) -> CommandError:
    """The core's refusal as the reply to ``prefix`` (``UC``, ``CC3``): in printable GSM-7, so a name
    outside it cannot turn the reply into UCS-2."""
    return CommandError(f"{prefix}: {printable_gsm7(exc.message)}", word or prefix.rstrip("0123456789"))


def resolve(ctx: Context, word: str, targets: Iterable[p.Target]) -> list[Member]:
    """Targets -> contacts, groups and E.164 numbers; an unknown name is an error naming it."""
    members: list[Member] = []
    seen: set[Any] = set()
    for target in targets:
        member: Member
        if isinstance(target, p.Phone):
            member = target.number
        else:
            found = find_contact(ctx.session, ctx.subscriber.id, target.name) or find_group(
                ctx.session, ctx.subscriber.id, target.name
            )
            if found is None:
                raise CommandError(f"{word}: no such user or group {quote(target.name)}", word)
            member = found
        key = member if isinstance(member, str) else (type(member).__name__, member.id)
        if key not in seen:
            seen.add(key)
            members.append(member)
    return members


MAX_GROUP_DEPTH = 10
"""Levels of groups flattening follows (a group named in a command is level 1). Real organisations nest a
few levels; a deeper chain is a mistake or a runaway import, refused with this limit in the reply."""


def expand(members: Iterable[Member]) -> list[Contact | str]:
    """The users and raw numbers of ``members``, in order, groups expanded depth-first, de-duplicated by number.

    Iterative (an explicit stack, not recursion) so no nesting can exhaust Python's stack; each group is
    followed once, so loops made outside the SMS language (portal, API) terminate. Raises
    :class:`NestingError` past :data:`MAX_GROUP_DEPTH` levels.
    """
    found: list[Contact | str] = []
    numbers: set[str] = set()
    visited: set[int] = set()

    def add(entry: Contact | str) -> None:
        number = entry if isinstance(entry, str) else entry.phone
        if number not in numbers:
            numbers.add(number)
            found.append(entry)

    for member in members:
        if not isinstance(member, Group):
            add(member)
            continue
        if member.id in visited:
            continue
        visited.add(member.id)
        stack: list[Iterator[GroupMember]] = [iter(member.members)]
        while stack:
            gm = next(stack[-1], None)
            if gm is None:
                stack.pop()
            elif gm.contact is not None:
                add(gm.contact)
            elif gm.phone:
                add(gm.phone)
            elif gm.member_group is not None and gm.member_group.id not in visited:
                if len(stack) >= MAX_GROUP_DEPTH:
                    raise NestingError(member.name, MAX_GROUP_DEPTH)
                visited.add(gm.member_group.id)
                stack.append(iter(gm.member_group.members))
    return found


def flatten(members: Iterable[Member]) -> list[str]:
    """E.164 numbers of ``members`` in order, groups expanded (see :func:`expand`), de-duplicated."""
    return [entry if isinstance(entry, str) else entry.phone for entry in expand(members)]


def _expand(word: str, members: Iterable[Member]) -> list[Contact | str]:
    """:func:`expand` for a command: a nesting error becomes the reply to ``word``."""
    try:
        return expand(members)
    except NestingError as exc:
        raise CommandError(f"{word}: {exc.reply}", word.rstrip("0123456789")) from exc


def _flatten(word: str, members: Iterable[Member]) -> list[str]:
    return [entry if isinstance(entry, str) else entry.phone for entry in _expand(word, members)]


def ic_members(ic: InstantConference) -> list[Member]:
    members: list[Member] = []
    for m in ic.members:
        if m.contact is not None:
            members.append(m.contact)
        elif m.group is not None:
            members.append(m.group)
        elif m.phone:
            members.append(m.phone)
    return members


def dial_list(mobile: str, numbers: Iterable[str]) -> tuple[str, ...]:
    """The subscriber's mobile first, then ``numbers`` without duplicates."""
    ordered = [mobile]
    for number in numbers:
        if number not in ordered:
            ordered.append(number)
    return tuple(ordered)


def ic_dial_list(ic: InstantConference) -> tuple[str, ...]:
    """Who to call when ``ic`` is launched (by SMS, DNIS + activation PIN or the portal): subscriber first.

    Raises :class:`NestingError` (its reply names the group and the limit) when groups nest too deep."""
    return dial_list(ic.subscriber.mobile, flatten(ic_members(ic)))


def label(member: Member) -> str:
    if isinstance(member, str):
        return member
    if isinstance(member, Contact):
        return member.nickname
    return f"{member.name}(group)"


def _person(contact: Contact) -> str:
    return f"{contact.first_name} {contact.last_name}".strip()


def _contact_line(contact: Contact) -> str:
    return f"{contact.nickname} {contact.phone} {_person(contact)}".strip()


# --- users ------------------------------------------------------------------------------------------


def _save_user(ctx: Context, cmd: p.CreateUser, contact: Contact | None) -> tuple[Contact, list[str]]:
    try:
        saved, changes = save_contact(
            ctx.session,
            ctx.subscriber.id,
            nickname=cmd.nickname if contact is None else contact.nickname,
            phone=cmd.phone,
            default_country=ctx.config.numbering.default_country,
            first_name=cmd.first_name,
            last_name=cmd.last_name,
            contact=contact,
            join=cmd.add_groups,
            leave=cmd.remove_groups,
        )
    except ProvisioningError as exc:
        error = refused(cmd.word, exc)
        if contact is None and exc.code == EXISTS and find_contact(ctx.session, ctx.subscriber.id, cmd.nickname):
            error = CommandError(f"{error.reply} - use UE to edit", cmd.word)
        raise error from exc
    return saved, _group_notes(changes)


def _group_notes(changes: GroupChanges) -> list[str]:
    notes = [f"+{group.name}(new)" if new else f"+{group.name}" for group, new in changes.joined]
    return notes + [f"-{group.name}" for group in changes.left]


def create_user(ctx: Context, cmd: p.CreateUser) -> Outcome:
    contact, notes = _save_user(ctx, cmd, None)
    return _with_notes(f"UC: added {_contact_line(contact)}", notes), ()


def edit_user(ctx: Context, cmd: p.CreateUser) -> Outcome:
    contact = find_contact(ctx.session, ctx.subscriber.id, cmd.nickname)
    if contact is None:
        raise CommandError(f"UE: no such user {quote(cmd.nickname)} - use UC to add", "UE")
    contact, notes = _save_user(ctx, cmd, contact)
    return _with_notes(f"UE: updated {_contact_line(contact)}", notes), ()


def _with_notes(text: str, notes: Sequence[str]) -> str:
    return fit_list(text + "; groups ", notes) if notes else text


def delete_user(ctx: Context, cmd: p.DeleteUser) -> Outcome:
    if isinstance(cmd.target, p.Name):
        contact = find_contact(ctx.session, ctx.subscriber.id, cmd.target.name)
        if contact is None:
            raise CommandError(f"UD: no such user {quote(cmd.target.name)}", "UD")
    else:
        matches = ctx.session.scalars(
            select(Contact)
            .where(Contact.subscriber_id == ctx.subscriber.id, Contact.phone == cmd.target.number)
            .order_by(Contact.nickname)
        ).all()
        if not matches:
            raise CommandError(f"UD: no user has number {cmd.target.number}", "UD")
        if len(matches) > 1:
            names = [c.nickname for c in matches]
            raise CommandError(
                fit_list(f"UD: {len(matches)} users have {cmd.target.number}: ", names, tail=" - use UD <nick>"),
                "UD",
            )
        contact = matches[0]
    where = delete_contact(ctx.session, contact)
    text = f"UD: deleted {contact.nickname} {contact.phone}"
    return (fit_list(text + "; removed from ", where) if where else text), ()


def lookup_users(ctx: Context, cmd: p.LookupUsers) -> Outcome:
    contacts = sorted(
        ctx.session.scalars(select(Contact).where(Contact.subscriber_id == ctx.subscriber.id)),
        key=lambda c: p.sort_key(c.nickname),
    )
    if not contacts:
        return "UL: you have no users yet - add one with UC <nick> <phone> <first>.<last>", ()
    query = cmd.query.strip().casefold()
    digits = "".join(ch for ch in query if ch.isdigit())
    only_digits = bool(digits) and all(ch.isdigit() or ch in "+-(). " for ch in query)

    def matches(contact: Contact) -> bool:
        if not query:
            return True
        if query in contact.nickname.casefold() or query in _person(contact).casefold():
            return True
        return only_digits and digits in contact.phone

    found = [c for c in contacts if matches(c)]
    if not found:
        return f"UL: no user matches {quote(cmd.query)}", ()
    return fit_list(f"UL: {len(found)} found: ", [_contact_line(c) for c in found], limit=LIST_LIMIT, sep="; "), ()


# --- groups -----------------------------------------------------------------------------------------


def define_group(ctx: Context, cmd: p.DefineGroup) -> Outcome:
    group = find_group(ctx.session, ctx.subscriber.id, cmd.name)
    name = cmd.name if group is None else group.name  # GC replaces the members; it does not rename
    try:
        check_group_name(ctx.session, ctx.subscriber.id, name, group)  # before the members: name errors first
        members = resolve(ctx, "GC", cmd.members)
        saved = save_group(ctx.session, ctx.subscriber.id, name=name, members=members, group=group)
    except ProvisioningError as exc:
        raise refused("GC", exc) from exc
    verb = "created" if group is None else "replaced"
    return fit_list(f"GC: group {saved.name} {verb}: ", [label(m) for m in members]), ()


def _group_labels(group: Group) -> list[str]:
    labels: list[str] = []
    for gm in group.members:
        if gm.contact is not None:
            labels.append(f"{gm.contact.nickname} {gm.contact.phone}")
        elif gm.member_group is not None:
            labels.append(f"{gm.member_group.name}(group)")
        elif gm.phone:
            labels.append(gm.phone)
    return labels


def list_group(ctx: Context, cmd: p.ListGroup) -> Outcome:
    if cmd.name is None:
        # One query for names and member counts: loading each group's members was one query per group
        # (3.2 s for 1,233 groups).
        rows = ctx.session.execute(
            select(Group.name, func.count(GroupMember.id))
            .outerjoin(GroupMember, GroupMember.group_id == Group.id)
            .where(Group.subscriber_id == ctx.subscriber.id)
            .group_by(Group.id, Group.name)
        ).all()
        rows = sorted(rows, key=lambda row: p.sort_key(row[0]))  # SQL lower() would put "équipe" after "z"
        if not rows:
            return "GL: you have no groups yet - create one with GC <group> <nick/phone/group> ...", ()
        return fit_list("GL: ", [f"{name}({count})" for name, count in rows], limit=LIST_LIMIT), ()
    group = find_group(ctx.session, ctx.subscriber.id, cmd.name)
    if group is None:
        raise CommandError(f"GL: no such group {quote(cmd.name)}", "GL")
    labels = _group_labels(group)
    if not labels:
        return f"GL: {group.name} is empty", ()
    return fit_list(f"GL {group.name} ({len(labels)}): ", labels, limit=LIST_LIMIT), ()


def delete_group(ctx: Context, cmd: p.DeleteGroup) -> Outcome:
    group = find_group(ctx.session, ctx.subscriber.id, cmd.name)
    if group is None:
        raise CommandError(f"GD: no such group {quote(cmd.name)}", "GD")
    name = group.name
    where = delete_group_row(ctx.session, group)
    text = f"GD: deleted group {name} (its users stay)"
    return (fit_list(text + "; removed from ", where) if where else text), ()


# --- conferences ------------------------------------------------------------------------------------


def _check_size(ctx: Context, word: str, numbers: Sequence[str]) -> None:
    limit = ctx.config.conference.max_participants
    if len(numbers) > limit:
        raise CommandError(f"{word}: {len(numbers)} people exceed the limit of {limit} per conference", word)


def _rejoin(ctx: Context, ic: InstantConference) -> str:
    common = common_dnis(ctx.session, ctx.config)
    return f" Rejoin: {common} PIN {ic.user_pin}" if common else f" User PIN {ic.user_pin}"


def launch_adhoc(ctx: Context, cmd: p.LaunchAdHoc) -> Outcome:
    try:
        check_adhoc(sum(isinstance(t, p.Phone) for t in cmd.targets), ctx.config)
    except ProvisioningError as exc:
        raise refused("IC", exc) from exc
    members = resolve(ctx, "IC", cmd.targets)
    numbers = dial_list(ctx.subscriber.mobile, _flatten("IC", members))
    if len(numbers) < 2:
        raise CommandError("IC: nobody to call besides you", "IC")
    _check_size(ctx, "IC", numbers)
    action = LaunchConference(subscriber_id=ctx.subscriber.id, numbers=numbers)
    others = len(numbers) - 1
    return fit_list(f"IC: calling you and {others} other{'s' if others > 1 else ''}: ", [label(m) for m in members]), (
        action,
    )


def _running_reply(ctx: Context, ic: InstantConference) -> str | None:
    """The reply to launching ``ic`` while it runs (``None`` when it does not).

    The conference service commits a run's row at launch and each leg's status as it changes, and closes
    the run when it ends (or at the next start after a crash), so an open run is a running conference.
    """
    run_id = ctx.session.scalar(
        select(ConferenceRun.id)
        .where(ConferenceRun.ic_id == ic.id, ConferenceRun.ended_at.is_(None))
        .order_by(ConferenceRun.id.desc())
        .limit(1)
    )
    if run_id is None:
        return None
    connected = ctx.session.scalar(
        select(func.count()).select_from(Leg).where(Leg.run_id == run_id, Leg.status == str(LegStatus.CONNECTED))
    )
    return f"IC{ic.slot} is already running: {connected or 0} connected.{_rejoin(ctx, ic)}"


def launch_ic(ctx: Context, cmd: p.LaunchIc) -> Outcome:
    slot = cmd.slot
    ic = find_ic(ctx.session, ctx.subscriber.id, slot)
    if ic is None:
        raise CommandError(f"IC{slot}: not defined - create it with CC{slot} <nick/phone/group> ...", "IC")
    running = _running_reply(ctx, ic)
    if running is not None:
        # Answered here rather than by the engine refusing the launch afterwards: one reply, no "calling
        # you" that the refusal then contradicts. The engine still refuses a launch that races this check.
        raise CommandError(running, "IC")
    numbers = dial_list(ctx.subscriber.mobile, _flatten(f"IC{slot}", ic_members(ic)))
    if len(numbers) < 2:
        raise CommandError(f"IC{slot}: has nobody to call - redefine it with CC{slot} <nick/phone/group> ...", "IC")
    _check_size(ctx, "IC", numbers)
    action = LaunchConference(subscriber_id=ctx.subscriber.id, numbers=numbers, ic_id=ic.id)
    others = len(numbers) - 1
    return f"IC{slot}: calling you and {others} other{'s' if others > 1 else ''}.{_rejoin(ctx, ic)}", (action,)


def define_ic(ctx: Context, cmd: p.DefineIc) -> Outcome:
    slot = cmd.slot
    try:
        check_adhoc(sum(isinstance(t, p.Phone) for t in cmd.targets), ctx.config)
    except ProvisioningError as exc:
        raise refused(f"CC{slot}", exc) from exc
    members = resolve(ctx, "CC", cmd.targets)
    _check_size(ctx, "CC", dial_list(ctx.subscriber.mobile, _flatten(f"CC{slot}", members)))
    created = find_ic(ctx.session, ctx.subscriber.id, slot) is None
    try:
        ic = assign_ic(ctx.session, ctx.subscriber, slot, ctx.config)
        set_ic_members(ctx.session, ic, members, ctx.config)
    except ProvisioningError as exc:
        raise refused(f"CC{slot}", exc) from exc
    ic.updated_at = _naive_utc(ctx.now)
    ctx.session.flush()
    launch = f" Launch: IC{slot}"
    if ic.dnis is not None:
        launch += f" or call {ic.dnis.number} PIN {ic.activation_pin}"
    tail = "." + launch + "." + _rejoin(ctx, ic)
    verb = "created" if created else "redefined"
    return fit_list(f"CC{slot}: IC{slot} {verb}: ", [label(m) for m in members], tail=tail), ()


def list_ic(ctx: Context, cmd: p.ListIc) -> Outcome:
    if cmd.slot is None:
        ics = ctx.session.scalars(
            select(InstantConference)
            .where(InstantConference.subscriber_id == ctx.subscriber.id)
            .order_by(InstantConference.slot)
        ).all()
        if not ics:
            return "LC: no ICs yet - create one with CC1 <nick/phone/group> ...", ()
        return fit_list("LC: your ICs: ", [f"IC{ic.slot}({len(ic.members)})" for ic in ics], limit=LIST_LIMIT), ()
    slot = cmd.slot
    ic = find_ic(ctx.session, ctx.subscriber.id, slot)
    if ic is None:
        raise CommandError(f"LC{slot}: IC{slot} is not defined - create it with CC{slot} <nick/phone/group> ...", "LC")
    # The users the IC calls (groups flattened), not its definition: that is what LCx promises.
    users = _expand(f"LC{slot}", ic_members(ic))
    tail = "."
    if ic.dnis is not None:
        tail += f" Call {ic.dnis.number} PIN {ic.activation_pin}."
    tail += _rejoin(ctx, ic)
    labels = [label(u) for u in users] or ["(nobody)"]
    head = f"IC{slot}: "
    if not fits(head + ", ".join(labels) + tail):
        # Cut to one SMS anyway; a name outside GSM-7 would make that 70 UCS-2 characters, hardly room
        # for a name beside the dial-in numbers, so names are shown by their base letters when all have
        # them ("Ipek" for "İpek"). Scripts without (Japanese...) stay as written, fewer of them shown.
        plain = [printable_gsm7(name) for name in labels]
        if not any("?" in name for name in plain):
            labels = plain
    return fit_list(head, labels, limit=SMS_LIMIT, tail=tail), ()


# --- SMS blast and help -----------------------------------------------------------------------------


def blast(ctx: Context, cmd: p.Blast) -> Outcome:
    members = resolve(ctx, "SB", cmd.targets)
    numbers = tuple(n for n in _flatten("SB", members) if n != ctx.subscriber.mobile)
    if not numbers:
        raise CommandError("SB: nobody to text besides you", "SB")
    _check_size(ctx, "SB", numbers)
    action = SmsBlast(subscriber_id=ctx.subscriber.id, numbers=numbers, text=cmd.text)
    count = len(numbers)
    return fit_list(f"SB: texting {count} number{'s' if count > 1 else ''}: ", [label(m) for m in members]), (action,)


def show_help(ctx: Context, cmd: p.Help) -> Outcome:
    conf = ctx.config.conference
    return help_text(cmd.topic, verbose=cmd.verbose, max_slot=conf.max_ics_per_subscriber, max_adhoc=conf.max_adhoc), ()


def _naive_utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


HANDLERS: dict[type[p.Command], Callable[[Context, Any], Outcome]] = {
    p.CreateUser: create_user,
    p.EditUser: edit_user,
    p.DeleteUser: delete_user,
    p.LookupUsers: lookup_users,
    p.DefineGroup: define_group,
    p.ListGroup: list_group,
    p.DeleteGroup: delete_group,
    p.LaunchAdHoc: launch_adhoc,
    p.LaunchIc: launch_ic,
    p.DefineIc: define_ic,
    p.ListIc: list_ic,
    p.Blast: blast,
    p.Help: show_help,
}


def handle(ctx: Context, command: p.Command) -> Outcome:
    """Carry out ``command``; raises :class:`CommandError` with the reply when it cannot."""
    return HANDLERS[type(command)](ctx, command)
