"""The generated parts of the manual (``docs/``), made from the code's own lists so they cannot drift.

``python -m bridge.docgen`` (``make docs-gen``) rewrites them; ``python -m bridge.docgen --check`` exits 1 and
names every stale file (``make docs-check`` and ``tests/test_docgen.py`` run it). A page keeps its prose by hand;
only the text between ``<!-- generated:NAME ... -->`` and ``<!-- /generated:NAME -->`` is written here:

- ``config``: every config key (:mod:`bridge.configdoc`), in ``docs/reference/config.md``;
- ``sms-syntax``, ``sms-help``, ``sms-errors``: every SMS command's syntax line and help replies
  (:mod:`bridge.commands.help`) and every error reply the command language and the provisioning core can give
  (read from their source), in ``docs/subscriber/sms-commands.md``;
- ``cli``: every ``bridge`` command with its options (the click group :data:`bridge.cli.main`);
- ``cdr-columns``: every CDR column (:data:`bridge.cdr.csvformat.HEADER`) with its meaning (:data:`CDR_COLUMNS`);
- ``rest``: every REST path from the OpenAPI document the portal serves at ``/api/v1/openapi.json`` (also
  written whole to ``docs/reference/openapi.json``); a tree without ``web.rest`` gets a note instead.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COMMAND = "python -m bridge.docgen"

#: The meaning of every CDR column, with the operator's billing name for it (the CDR page's table).
#: A column added to :data:`bridge.cdr.csvformat.HEADER` without an entry here fails ``tests/test_docgen.py``.
CDR_COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("Record ID", "Unique id of the record; a correction file repeats it with the current values."),
    "created_at": ("Record time", "When the record was first written (local time of the company)."),
    "company_id": ("Company ID", "Company (tenant) id; empty for calls that named none."),
    "company_name": ("Company", "Company name at the time of the call (kept when the company is renamed or deleted)."),
    "moderator_ident": ("Moderator ident", "The subscriber's ident (portal username, else mobile)."),
    "moderator_name": ("Moderator name", "The subscriber's name at the time of the call."),
    "moderator_phone": ("Moderator phone", "The subscriber's mobile in E.164: the number outbound legs present."),
    "subscriber_id": ("Subscriber ID", "Internal subscriber id."),
    "ic_id": ("IC ID", "Instant Conference id (empty for ad hoc `IC` calls and rooms)."),
    "service_id": ("Service ID", "Conference run id: every leg of one conference has the same value."),
    "service_result": ("Service result", "How the conference ended (`completed`, `refused`, `abandoned`...)."),
    "service_type": ("Service type", "`IC`, `room` or `dial-in` (a caller refused at the PIN prompt)."),
    "service_subject": ("Service subject", "The IC's or room's name."),
    "service_started_at": ("Service started", "When the conference started."),
    "service_completed_at": ("Service completed", "When the conference ended (empty while it runs)."),
    "scheduled": ("Scheduled", "`1` for a scheduled conference, `0` for one launched on demand."),
    "destination": ("Destination", "The number this leg is for: the called number (out) or the caller (in)."),
    "direction": ("Direction", "`out` (dialled by the bridge) or `in` (dial-in)."),
    "role": ("Role", "`subscriber`, `moderator`, `participant`, `attendee` or `caller`."),
    "cli": ("CLI", "Calling line identity sent (out: the subscriber's mobile) or received (in)."),
    "dnis": ("DNIS", "The dialled number for dial-in legs (common DNIS, IC DNIS or room number)."),
    "called_at": ("Call start", "When the INVITE was sent or received."),
    "joined_at": ("Join time", "When the leg joined the conference (empty if it never did)."),
    "disconnected_at": ("Disconnect time", "When the leg ended; the hourly files are cut on this time (UTC hour)."),
    "port_id": ("Port", "E1 `span:channel` on an E1 trunk group, else the local RTP port."),
    "activation_pin_used": ("Activation PIN used", "`1` when the caller launched the IC with its activation PIN."),
    "recording": ("Recording", "`1` when the conference was recorded while this leg was in it."),
    "call_id": ("SIP Call-ID", "SIP Call-ID of the leg (to find it in SIP traces)."),
    "cause": ("Cause", "Why the leg ended (`SIP 486`, `no answer`, `kicked`, `conference ended`...)."),
    "codec": ("Codec", "`PCMU` or `PCMA`."),
    "packet_loss": ("Packet loss", "Fraction of the leg's expected RTP packets that were lost (0 to 1)."),
    "leg_id": ("Leg ID", "Internal leg id (the control API's `leg_id`)."),
    "duration_s": ("Duration (s)", "Connected seconds, joined -> disconnected, half-up; 0 if never joined."),
    "minutes": ("Billed minutes", "`duration_s` rounded up to whole minutes (per leg)."),
}


def begin(name: str) -> str:
    return f"<!-- generated:{name} (do not edit: make docs-gen) -->"


def end(name: str) -> str:
    return f"<!-- /generated:{name} -->"


# --- the blocks --------------------------------------------------------------------------------------------


def config_block() -> str:
    from bridge import configdoc

    return configdoc.reference()


def _slot_limits() -> tuple[int, int]:
    from bridge.config import Config

    conference = Config().conference
    return conference.max_ics_per_subscriber, conference.max_adhoc


def sms_syntax_block() -> str:
    from bridge.commands import help as sms_help

    max_slot, max_adhoc = _slot_limits()
    lines = sms_help.syntax(max_slot, max_adhoc)
    out = [
        f"The reply to `? <command>` (with the default limits: {max_slot} ICs, {max_adhoc} ad hoc numbers).",
        "",
        "| command | reply to `? <command>` |",
        "|---|---|",
    ]
    out += [f"| `{word}` | {_cell(lines[word])} |" for word in sms_help.COMMANDS]
    return "\n".join(out) + "\n"


def sms_help_block() -> str:
    from bridge.commands import help as sms_help

    max_slot, _ = _slot_limits()
    return (
        "\n".join(
            [
                "`?` or `HELP` alone:",
                "",
                "```text",
                sms_help.SHORT_HELP,
                "```",
                "",
                "`??` (every command; sent as up to three SMS parts):",
                "",
                "```text",
                sms_help.full_help(max_slot),
                "```",
            ]
        )
        + "\n"
    )


_ERROR_SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bridge/commands/parser.py", ("ParseError", "CommandError")),
    ("bridge/commands/handlers.py", ("CommandError", "ParseError")),
    ("bridge/provisioning", ("ProvisioningError",)),
)


def _template(node: ast.expr, constants: dict[str, Any]) -> str | None:
    """An error message expression as a template: ``f"{word}: no such user {quote(x)}"`` -> ``<word>: ...``.

    ``constants`` are the module's globals: a limit such as ``PIN_MAX`` is shown with its value.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "USAGE":
        return None  # USAGE["UD"]: listed with the usage replies
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "fit_list" and node.args:
        tail = next((k.value for k in node.keywords if k.arg == "tail"), None)
        head = _template(node.args[0], constants) or ""
        return head + "<list>" + (_template(tail, constants) or "" if tail is not None else "")
    if not isinstance(node, ast.JoinedStr):
        return "<" + _placeholder(node, constants) + ">"
    parts: list[str] = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue):
            inner = value.value
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in ("quote", "shown"):
                parts.append("'<" + _placeholder(inner.args[0], constants) + ">'")
            elif isinstance(inner, ast.Name) and isinstance(constants.get(inner.id), int | str):
                parts.append(str(constants[inner.id]))
            else:
                parts.append("<" + _placeholder(inner, constants) + ">")
    return "".join(parts)


def _placeholder(node: ast.expr, constants: dict[str, Any]) -> str:
    """A short name for what an expression in a message stands for (``cmd.target.name`` -> ``name``)."""
    while True:
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and node.args:
            node = node.args[0]
        else:
            break
    if isinstance(node, ast.Attribute):
        name = "reason" if node.attr in ("message", "reply") else node.attr
    elif isinstance(node, ast.Name):
        name = "reason" if node.id in ("exc", "error") else node.id
    else:
        name = "value"
    return name.strip("_") or "value"


def error_replies() -> list[tuple[str, str]]:
    """``[(source file, reply template)]`` of every error the SMS commands can answer, in source order."""
    found: list[tuple[str, int, str]] = []
    for source, classes in _ERROR_SOURCES:
        root = REPO / source
        for path in sorted(root.glob("*.py")) if root.is_dir() else [root]:
            name = str(path.relative_to(REPO))
            module = importlib.import_module(name.removesuffix(".py").removesuffix("/__init__").replace("/", "."))
            constants = vars(module)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes:
                    text = _template(node.args[0], constants) if node.args else None
                    if text is not None:
                        found.append((name, node.lineno, text))
    seen: set[tuple[str, str]] = set()
    out = []
    for name, _, text in sorted(found):
        if not re.search(r"[A-Za-z]", re.sub(r"<[^>]*>", "", text)):
            continue  # "<word>: <reason>": a message passed on from elsewhere, listed where it is made
        if (name, text) not in seen:
            seen.add((name, text))
            out.append((name, text))
    return out


def sms_errors_block() -> str:
    from bridge.commands import REFUSAL, SUSPENDED
    from bridge.commands.parser import USAGE
    from bridge.smpp.store import INCOMPLETE_REPLY, UNREADABLE_REPLY

    out = [
        "Before any command is read:",
        "",
        "| when | reply |",
        "|---|---|",
        f"| the sender's number is not a registered subscriber (once per sender; logged) | `{_code(REFUSAL)}` |",
        f"| the subscriber is suspended | `{_code(SUSPENDED)}` |",
        f"| the SMS cannot be decoded | `{_code(UNREADABLE_REPLY)}` |",
        f"| a part of a long SMS never arrived | `{_code(INCOMPLETE_REPLY)}` |",
        "",
        "A command the bridge cannot read gets its usage line (nothing is changed):",
        "",
        "| command | reply |",
        "|---|---|",
    ]
    out += [f"| `{word}` | `{_code(text)}` |" for word, text in USAGE.items()]
    out += [
        "",
        "Every other error reply, as written in the code (`<...>` is filled in: the command word such as `UC` or",
        "`CC3`, the name or number you sent, a limit). Replies from the provisioning rules start with the command",
        "word (`UC: nickname 'bob' exists`).",
        "",
        "| where | reply |",
        "|---|---|",
    ]
    for source, text in error_replies():
        where = {"bridge/commands/parser.py": "reading the text", "bridge/commands/handlers.py": "carrying it out"}
        out.append(f"| {where.get(source, 'provisioning rules')} | `{_code(text)}` |")
    return "\n".join(out) + "\n"


def _walk(command: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name])


def cli_commands() -> list[str]:
    """Every ``bridge ...`` command path, the group's own included."""
    from bridge.cli import main

    return [" ".join(path) for path, _ in _walk(main, ["bridge"])]


def cli_block() -> str:
    from bridge.cli import main

    out: list[str] = []
    for path, command in _walk(main, ["bridge"]):
        name = " ".join(path)
        ctx = click.Context(command, info_name=name)
        usage = " ".join(command.collect_usage_pieces(ctx))
        out += ["", f"### `{name}`", "", "```text", f"{name} {usage}".rstrip(), "```", ""]
        text = (command.help or command.short_help or "").replace("\b\n", "").strip()
        if text:
            out += [_dedent(text), ""]
        rows = []
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or "--help" in record[0]:
                continue
            rows.append(f"| `{_cell(record[0])}` | {_cell(record[1])} |")
        if rows:
            out += ["| option | meaning |", "|---|---|", *rows, ""]
        if isinstance(command, click.Group):
            subs = [n for n in sorted(command.list_commands(ctx)) if not command.get_command(ctx, n).hidden]  # type: ignore[union-attr]
            out += ["Commands: " + ", ".join(f"[`{n}`](#{_anchor(name + ' ' + n)})" for n in subs) + ".", ""]
    return "\n".join(out).strip() + "\n"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as the portal serves it at ``/api/v1/openapi.json``."""
    import web
    from bridge.config import Config

    app = web.create_app({"BRIDGE": Config(), "SECRET_KEY": "docgen", "DATABASE_URL": "sqlite://", "TESTING": True})
    response = app.test_client().get("/api/v1/openapi.json")
    if response.status_code != 200:
        raise RuntimeError(f"/api/v1/openapi.json answered {response.status_code}")
    document: dict[str, Any] = response.get_json()
    return document


def rest_paths() -> list[str]:
    return sorted(openapi_document()["paths"])


def rest_block() -> str:
    document = openapi_document()
    info = document["info"]
    out = [
        f"{info['title']} {info['version']} (OpenAPI {document['openapi']}): the whole document is"
        " [openapi.json](openapi.json), served by the portal at `/api/v1/openapi.json`.",
        "",
        "| method | path | summary | token scopes |",
        "|---|---|---|---|",
    ]
    operations = [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]
    for path, method, op in operations:
        scopes = op.get("description", "").removeprefix("Token scopes: ").rstrip(".")
        link = _anchor(f"{method.upper()} {path}")
        out.append(f"| `{method.upper()}` | [`{path}`](#{link}) | {_cell(op.get('summary', ''))} | {scopes} |")
    for path, method, op in operations:
        out += ["", f"### `{method.upper()} {path}`", "", _cell(op.get("summary", "")) + ".", ""]
        if op.get("description"):
            out += [op["description"], ""]
        params = op.get("parameters", [])
        if params:
            out += ["| parameter | in | required | schema |", "|---|---|---|---|"]
            for p in params:
                schema = json.dumps(p.get("schema", {}), sort_keys=True)
                out.append(
                    f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | `{_code(schema)}` |"
                )
            out.append("")
        body = op.get("requestBody")
        if body:
            for media, content in body["content"].items():
                out += [f"Request body (`{media}`):", "", "```json", json.dumps(content["schema"], indent=2), "```", ""]
        for status, response in op.get("responses", {}).items():
            if status == "default":
                continue
            media_types = ", ".join(f"`{m}`" for m in response.get("content", {}))
            out.append(
                f"Response `{status}`: {response['description']}" + (f" ({media_types})." if media_types else ".")
            )
            for media, content in response.get("content", {}).items():
                if media.endswith("json"):
                    out += ["", "```json", json.dumps(content["schema"], indent=2), "```"]
        out += ["", "Errors: an RFC 7807 problem (`application/problem+json`)."]
    return "\n".join(out) + "\n"


def cdr_columns() -> tuple[str, ...]:
    from bridge.cdr.csvformat import HEADER

    return HEADER


def cdr_block() -> str:
    from bridge.cdr.csvformat import BOOL_COLUMNS, TIME_COLUMNS

    out = ["| # | column | billing name | kind | meaning |", "|---|---|---|---|---|"]
    for i, column in enumerate(cdr_columns(), start=1):
        billing, meaning = CDR_COLUMNS.get(column, ("", "*undocumented: add it to bridge.docgen.CDR_COLUMNS*"))
        kind = "time" if column in TIME_COLUMNS else "0/1" if column in BOOL_COLUMNS else ""
        out.append(f"| {i} | `{column}` | {billing} | {kind} | {_cell(meaning)} |")
    return "\n".join(out) + "\n"


# --- pages -------------------------------------------------------------------------------------------------

#: page -> the blocks it holds.
PAGES: dict[str, dict[str, Callable[[], str]]] = {
    "reference/config.md": {"config": config_block},
    "subscriber/sms-commands.md": {
        "sms-syntax": sms_syntax_block,
        "sms-help": sms_help_block,
        "sms-errors": sms_errors_block,
    },
    "reference/cli.md": {"cli": cli_block},
    "reference/cdr-format.md": {"cdr-columns": cdr_block},
    "reference/rest-api.md": {"rest": rest_block},
}

#: Whole files written from the code.
FILES: dict[str, Callable[[], str | None]] = {
    "reference/crm.xsd": lambda: (REPO / "web" / "crm" / "crm.xsd").read_text(encoding="utf-8"),
    "reference/openapi.json": lambda: json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n",
}


def render(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    """``text`` with each named block replaced by its generated content (the markers stay)."""
    for name, make in blocks.items():
        start_marker, end_marker = begin(name), end(name)
        if start_marker not in text or end_marker not in text:
            raise ValueError(f"markers of block {name!r} missing: {start_marker} ... {end_marker}")
        start = text.index(start_marker) + len(start_marker)
        stop = text.index(end_marker)
        text = text[:start] + "\n" + make() + text[stop:]
    return text


def outputs(docs: Path = DOCS) -> Iterator[tuple[Path, str | None]]:
    """``(path, what it should hold)`` for every generated file; None: the file should not exist."""
    for page, blocks in PAGES.items():
        path = docs / page
        yield path, render(path.read_text(encoding="utf-8"), blocks)
    for name, make in FILES.items():
        yield docs / name, make()


def stale(docs: Path = DOCS) -> list[Path]:
    """The generated files that differ from what the code gives now."""
    out = []
    for path, wanted in outputs(docs):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != wanted:
            out.append(path)
    return out


def write(docs: Path = DOCS) -> list[Path]:
    changed = []
    for path, wanted in outputs(docs):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == wanted:
            continue
        if wanted is None:
            path.unlink()
        else:
            path.write_text(wanted, encoding="utf-8")
        changed.append(path)
    return changed


def config_keys() -> list[tuple[str, str]]:
    """``[(section header, key)]`` of every config key, as the reference names them."""
    import typing

    from bridge.config import Config

    keys: list[tuple[str, str]] = []

    def visit(cls: type[Any], header: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            keys.append((header, f.name))
            hint = hints[f.name]
            inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
            if dataclasses.is_dataclass(inner):
                visit(typing.cast(type[Any], inner), f"[[{header.strip('[]')}.{f.name}]]")

    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        hint = hints[f.name]
        is_list = typing.get_origin(hint) is list
        inner = typing.get_args(hint)[0] if is_list else hint
        if dataclasses.is_dataclass(inner):
            visit(typing.cast(type[Any], inner), f"[[{f.name}]]" if is_list else f"[{f.name}]")
    return keys


# --- helpers -----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("`", "'")


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip()


def _anchor(title: str) -> str:
    """The id MkDocs (Python-Markdown's toc) gives a heading ``### `title` ``."""
    slug = re.sub(r"[^\w\s-]", "", title).strip().lower()
    return re.sub(r"[-\s]+", "-", slug)


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        old = stale()
        if old:
            names = ", ".join(str(p.relative_to(REPO)) for p in old)
            print(f"stale generated documentation: {names}\nrun: make docs-gen  (or {COMMAND})", file=sys.stderr)
            return 1
        print("generated documentation up to date")
        return 0
    if argv:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    for path in write():
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
