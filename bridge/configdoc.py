"""Generate the manual's configuration reference from the config dataclasses' field docstrings.

``python -m bridge.configdoc`` prints the Markdown; ``python -m bridge.configdoc --write`` replaces the text
between the ``generated:config`` markers of ``docs/reference/config.md`` (the page :data:`TARGET`; ``make
docs-gen`` does it with the manual's other generated references). ``tests/test_docgen.py`` keeps it in sync.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

from bridge.config import Config

BEGIN = "<!-- generated:config (do not edit: make docs-gen) -->"
END = "<!-- /generated:config -->"
TARGET = Path(__file__).resolve().parent.parent / "docs" / "reference" / "config.md"
"""The page that holds the reference (it moved there from README.md)."""


def field_docs(cls: type[Any]) -> dict[str, str]:
    """``{field: docstring}`` from the string literal that follows each annotated field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = typing.cast(ast.ClassDef, tree.body[0]).body
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "*required*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | list):
        return "`" + json.dumps(value) + "`"
    return f"`{value}`"


def _section(cls: type[Any], header: str, out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    doc = " ".join((cls.__doc__ or "").split()) if cls.__doc__ and not cls.__doc__.startswith(cls.__name__) else ""
    out += ["", f"### `{header}`", *([doc] if doc else []), "", "| key | default | meaning |", "|---|---|---|"]
    nested: list[tuple[type[Any], str]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        if dataclasses.is_dataclass(inner):
            nested.append((typing.cast(type[Any], inner), f"[[{header.strip('[]')}.{f.name}]]"))
            out.append(f"| `{f.name}` | `[]` | {docs.get(f.name, '')} See `{nested[-1][1]}` below. |")
            continue
        out.append(f"| `{f.name}` | {_default(f)} | {docs.get(f.name, '').replace('|', '/')} |")
    for sub, sub_header in nested:
        _section(sub, sub_header, out)


def reference() -> str:
    """The Markdown reference: one table per section, in ``Config`` order."""
    out: list[str] = []
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        hint = hints[f.name]
        is_list = typing.get_origin(hint) is list
        inner = typing.get_args(hint)[0] if is_list else hint
        if dataclasses.is_dataclass(inner):
            _section(typing.cast(type[Any], inner), f"[[{f.name}]]" if is_list else f"[{f.name}]", out)
    return "\n".join(out).strip() + "\n"


def write(path: Path = TARGET) -> bool:
    """Replace the marked block in ``path``; returns True when the file changed."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no config reference markers; the reference lives in {TARGET} (make docs-gen)")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    updated = text[:start] + "\n" + reference() + text[end:]
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--write" and len(argv) <= 2:
        print("updated" if write(Path(argv[1]) if len(argv) == 2 else TARGET) else "up to date")
        return 0
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
