"""The SMS command language (the operator's Appendix A): text -> one command object.

Pure: no database, no clock. The command word is case-insensitive; arguments are separated by any
whitespace. Targets (``<nick|phone|group>``) are read here as a :class:`Phone` when written like a number
(normalised to E.164) or a :class:`Name` otherwise; the handlers decide whether a name is a user or a group.

Names (nicknames, group names) follow :mod:`bridge.provisioning.names` (a letter first, then letters,
digits, ``_``, ``.``, ``-``; any Unicode letter), so they can never be confused with a number, a slot or
a ``-group`` removal. They are read in NFC and compared by :func:`name_key`.

Conference slots are written ``IC3`` or ``IC 3`` (likewise ``CC3``/``CC 3`` and ``LC3``/``LC 3``): a one- or
two-digit argument is a slot, never a phone number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from bridge.commands.errors import ParseError
from bridge.commands.help import printable_gsm7, quote
from bridge.phone import PhoneError, looks_like_phone, to_e164
from bridge.provisioning import ProvisioningError
from bridge.provisioning.names import NAME_MAX as NAME_MAX
from bridge.provisioning.names import check_name, check_person_name, is_name, name_key, nfc
from bridge.provisioning.names import sort_key as sort_key

_SLOT_WORD_RE = re.compile(r"(IC|CC|LC)(\d+)\Z")
_SLOT_ARG_RE = re.compile(r"\d{1,2}\Z")
BLAST_MAX_CHARS = 640
"""Longest SMS blast text accepted (about four concatenated parts)."""


@dataclass(frozen=True)
class Phone:
    """A target written as a number, already in E.164."""

    number: str


@dataclass(frozen=True)
class Name:
    """A target written as a name: a user's nickname or a group name."""

    name: str


Target = Phone | Name


@dataclass(frozen=True)
class Command:
    """Base of every parsed command; ``word`` is the command word reported in results and logs."""

    word: ClassVar[str] = ""


@dataclass(frozen=True)
class CreateUser(Command):
    """``UC <nick> <phone> <first>[.<last>] [[-]group ...]``."""

    word: ClassVar[str] = "UC"
    nickname: str
    phone: str
    first_name: str
    last_name: str
    add_groups: tuple[str, ...] = ()
    remove_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditUser(CreateUser):
    """``UE``: same syntax as ``UC``, for an existing nickname."""

    word: ClassVar[str] = "UE"


@dataclass(frozen=True)
class DeleteUser(Command):
    """``UD <nick>|<phone>``."""

    word: ClassVar[str] = "UD"
    target: Target


@dataclass(frozen=True)
class LookupUsers(Command):
    """``UL [search]``: empty search lists every user."""

    word: ClassVar[str] = "UL"
    query: str


@dataclass(frozen=True)
class DefineGroup(Command):
    """``GC <group> <nick|phone|group> ...``: create or replace."""

    word: ClassVar[str] = "GC"
    name: str
    members: tuple[Target, ...]


@dataclass(frozen=True)
class ListGroup(Command):
    """``GL [group]``: one group's members, or every group when ``name`` is ``None``."""

    word: ClassVar[str] = "GL"
    name: str | None


@dataclass(frozen=True)
class DeleteGroup(Command):
    """``GD <group>``."""

    word: ClassVar[str] = "GD"
    name: str


@dataclass(frozen=True)
class LaunchAdHoc(Command):
    """``IC <nick|phone|group> ...``: call them now."""

    word: ClassVar[str] = "IC"
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class LaunchIc(Command):
    """``ICx`` / ``IC x``: launch the subscriber's Instant Conference in slot ``slot``."""

    word: ClassVar[str] = "IC"
    slot: int


@dataclass(frozen=True)
class DefineIc(Command):
    """``CCx <nick|phone|group> ...``: create or redefine Instant Conference ``slot``."""

    word: ClassVar[str] = "CC"
    slot: int
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class ListIc(Command):
    """``LCx`` / ``LC x``: one IC's members and PINs; ``LC`` alone lists the defined slots."""

    word: ClassVar[str] = "LC"
    slot: int | None


@dataclass(frozen=True)
class Blast(Command):
    """``SB <group|nick|phone> ... : <text>``: text everyone, no call."""

    word: ClassVar[str] = "SB"
    targets: tuple[Target, ...]
    text: str


@dataclass(frozen=True)
class Help(Command):
    """``?``, ``??`` or ``HELP``, optionally followed by a command word (``topic``)."""

    word: ClassVar[str] = "HELP"
    topic: str | None = None
    verbose: bool = False


USAGE = {
    "UC": "UC: use UC <nick> <phone> <first>[.<last>] [[-]group ...]",
    "UE": "UE: use UE <nick> <phone> <first>[.<last>] [[-]group ...]",
    "UD": "UD: use UD <nick> or UD <phone>",
    "GC": "GC: use GC <group> <nick|phone|group> ...",
    "GL": "GL: use GL <group>, or GL alone for all groups",
    "GD": "GD: use GD <group>",
    "IC": "IC: use IC <nick|phone|group> ... or ICx to launch IC x",
    "CC": "CC: use CCx <nick|phone|group> ... to define IC x",
    "LC": "LC: use LCx to list IC x, or LC alone for all",
    "SB": "SB: use SB <group|nick|phone> ... : <text>",
}


def parse(text: str, *, default_country: str, max_slot: int = 30) -> Command:
    """Read one SMS; raises :class:`ParseError` (with the reply text) when it is not a valid command."""
    stripped = text.strip()
    tokens = stripped.split()
    if not tokens:
        return Help()
    first = tokens[0]
    if first.startswith("?"):
        marks = len(first) - len(first.lstrip("?"))
        inline = first[marks:]  # "?UC" written without a space
        topic_tokens = ([inline] if inline else []) + tokens[1:]
        return _help(topic_tokens, verbose=marks >= 2)
    word = first.upper()
    args = tokens[1:]
    if word == "HELP":
        return _help(args, verbose=False)
    slot_word = _SLOT_WORD_RE.match(word)
    if slot_word:
        base, slot_text = slot_word.group(1), slot_word.group(2)
        return _slot_command(base, _slot(base, slot_text, max_slot), args, default_country)
    if word in ("IC", "CC", "LC") and args and _SLOT_ARG_RE.match(args[0]):
        return _slot_command(word, _slot(word, args[0], max_slot), args[1:], default_country, spaced=True)
    if word in ("UC", "UE"):
        return _user(word, args, default_country)
    if word == "UD":
        joined = " ".join(args)
        if len(args) > 1 and looks_like_phone(joined):
            args = [joined]  # one number written with spaces: "UD +1 555 123 0002"
        if len(args) != 1:
            raise ParseError(USAGE["UD"], "UD")
        return DeleteUser(target=_target("UD", args[0], default_country))
    if word == "UL":
        return LookupUsers(query=" ".join(args))
    if word == "GC":
        if len(args) < 2:
            raise ParseError(USAGE["GC"], "GC")
        return DefineGroup(name=_name("GC", args[0], "group name"), members=_targets("GC", args[1:], default_country))
    if word == "GL":
        if len(args) > 1:
            raise ParseError(USAGE["GL"], "GL")
        return ListGroup(name=_name("GL", args[0], "group name") if args else None)
    if word == "GD":
        if len(args) != 1:
            raise ParseError(USAGE["GD"], "GD")
        return DeleteGroup(name=_name("GD", args[0], "group name"))
    if word == "IC":
        if not args:
            raise ParseError(USAGE["IC"], "IC")
        return LaunchAdHoc(targets=_targets("IC", args, default_country))
    if word == "CC":
        raise ParseError(USAGE["CC"], "CC")
    if word == "LC":
        if args:
            raise ParseError(USAGE["LC"], "LC")
        return ListIc(slot=None)
    if word == "SB":
        return _blast(stripped[len(first) :], default_country)
    raise ParseError(f"Unknown command {quote(first, 10)}. Send ? for help.")


def _help(args: list[str], *, verbose: bool) -> Help:
    if not args:
        return Help(verbose=verbose)
    topic = args[0].upper()
    slot_word = _SLOT_WORD_RE.match(topic)
    return Help(topic=slot_word.group(1) if slot_word else topic, verbose=verbose)


def _slot(word: str, text: str, max_slot: int) -> int:
    slot = int(text) if len(text) <= 4 else 10_000
    if not 1 <= slot <= max_slot:
        # Re-rendered: \d also matches non-ASCII digits ("IC٣٣"), which must not be echoed as they came.
        shown = str(int(text[:4])) + ("..." if len(text) > 4 else "")
        raise ParseError(f"{word}: slot {shown} out of range 1-{max_slot}", word)
    return slot


def _slot_command(word: str, slot: int, args: list[str], default_country: str, *, spaced: bool = False) -> Command:
    if word == "IC":
        if args:
            raise ParseError(f"IC: use IC{slot} alone to launch IC {slot}, or IC <nick|phone|group> ...", "IC")
        return LaunchIc(slot=slot)
    if word == "LC":
        if args:
            raise ParseError(USAGE["LC"], "LC")
        return ListIc(slot=slot)
    if not args:
        raise ParseError(f"CC{slot}: give the members: CC{slot} <nick|phone|group> ...", "CC")
    return DefineIc(slot=slot, targets=_targets("CC", args, default_country))


def _user(word: str, args: list[str], default_country: str) -> CreateUser:
    if len(args) < 3:
        raise ParseError(USAGE[word], word)
    nickname = _name(word, args[0], "nickname")
    try:
        phone = to_e164(args[1], default_country)
    except PhoneError as exc:
        raise ParseError(f"{word}: {exc}", word) from exc
    first, _, last = args[2].partition(".")
    first, last = first.replace("_", " ").strip(), last.replace("_", " ").strip()
    if not first:
        raise ParseError(f"{word}: give a first name: {word} <nick> <phone> <first>[.<last>]", word)
    try:
        check_person_name(first, last)
    except ProvisioningError as exc:
        raise ParseError(f"{word}: {exc.message}", word) from exc
    add: list[str] = []
    remove: list[str] = []
    for token in args[3:]:
        bucket = remove if token.startswith("-") else add
        name = _name(word, token[1:] if token[:1] in "-+" else token, "group name")
        if name_key(name) not in (name_key(n) for n in bucket):
            bucket.append(name)
    clash = {name_key(n) for n in add} & {name_key(n) for n in remove}
    if clash:
        raise ParseError(f"{word}: group {quote(sorted(clash)[0])} is both added and removed", word)
    cls = EditUser if word == "UE" else CreateUser
    return cls(
        nickname=nickname,
        phone=phone,
        first_name=first,
        last_name=last,
        add_groups=tuple(add),
        remove_groups=tuple(remove),
    )


def _blast(rest: str, default_country: str) -> Blast:
    head, sep, body = rest.partition(":")
    body = body.strip()
    if not sep or not head.split() or not body:
        raise ParseError(USAGE["SB"], "SB")
    if len(body) > BLAST_MAX_CHARS:
        raise ParseError(f"SB: text too long ({len(body)} characters, at most {BLAST_MAX_CHARS})", "SB")
    return Blast(targets=_targets("SB", head.split(), default_country), text=body)


def _name(word: str, token: str, what: str) -> str:
    try:
        return check_name(token, what, field=what)
    except ProvisioningError as exc:
        raise ParseError(f"{word}: {printable_gsm7(exc.message)}", word) from exc


def _targets(word: str, tokens: list[str], default_country: str) -> tuple[Target, ...]:
    targets: list[Target] = []
    seen: set[Target] = set()
    for token in tokens:
        target = _target(word, token, default_country)
        key = Name(name_key(target.name)) if isinstance(target, Name) else target
        if key not in seen:
            seen.add(key)
            targets.append(target)
    return tuple(targets)


def _target(word: str, token: str, default_country: str) -> Target:
    if looks_like_phone(token):
        try:
            return Phone(to_e164(token, default_country))
        except PhoneError as exc:
            raise ParseError(f"{word}: {exc}", word) from exc
    if is_name(nfc(token)):
        return Name(nfc(token))
    raise ParseError(f"{word}: {quote(token)} is not a nickname, group or phone number", word)
