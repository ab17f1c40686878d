"""The manual (docs/) against the code: the generated references are current, and every config key, SMS
command, CLI command, REST path and CDR column appears in its reference page (issue 20)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import docgen

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_generated_pages_are_up_to_date() -> None:
    old = [str(path.relative_to(REPO)) for path in docgen.stale()]
    assert not old, f"stale generated documentation {old}: run make docs-gen (python -m bridge.docgen)"


def test_every_config_key_is_in_the_reference() -> None:
    page = _page("reference/config.md")
    sections = re.split(r"^### ", page, flags=re.M)
    by_header = {s.split("\n", 1)[0].strip("` "): s for s in sections[1:]}
    missing = [
        f"{header} {key}"
        for header, key in docgen.config_keys()
        if header not in by_header or f"| `{key}` |" not in by_header[header]
    ]
    assert not missing, f"config keys missing from docs/reference/config.md: {missing}"


def test_every_sms_command_is_documented() -> None:
    from bridge.commands.help import COMMANDS
    from bridge.commands.parser import USAGE

    page = _page("subscriber/sms-commands.md")
    words = [*COMMANDS, *USAGE, "HELP", "??"]
    missing = [word for word in words if f"`{word}" not in page]
    assert not missing, f"SMS commands missing from docs/subscriber/sms-commands.md: {missing}"
    for _, reply in docgen.error_replies():
        assert docgen._code(reply) in page


def test_every_cli_command_is_documented() -> None:
    page = _page("reference/cli.md")
    missing = [path for path in docgen.cli_commands() if f"### `{path}`" not in page]
    assert not missing, f"CLI commands missing from docs/reference/cli.md: {missing}"


def test_every_rest_path_is_documented() -> None:
    paths = docgen.rest_paths()
    assert paths, "the OpenAPI document lists no paths"
    page = _page("reference/rest-api.md")
    missing = [path for path in paths if f"`{path}`" not in page]
    assert not missing, f"REST paths missing from docs/reference/rest-api.md: {missing}"


def test_every_cdr_column_is_documented() -> None:
    page = _page("reference/cdr-format.md")
    columns = docgen.cdr_columns()
    undocumented = [c for c in columns if c not in docgen.CDR_COLUMNS]
    assert not undocumented, f"CDR columns without a meaning in bridge.docgen.CDR_COLUMNS: {undocumented}"
    assert not set(docgen.CDR_COLUMNS) - set(columns), "bridge.docgen.CDR_COLUMNS names columns the CDR has not"
    missing = [c for c in columns if f"| `{c}` |" not in page]
    assert not missing, f"CDR columns missing from docs/reference/cdr-format.md: {missing}"
    assert ",".join(columns) in page, "the example header row differs from bridge.cdr.csvformat.HEADER"


def test_every_page_is_in_the_nav_and_every_image_is_used() -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))
    unused = [p.name for p in (DOCS / "img").glob("*.png") if f"img/{p.name}" not in text]
    assert not unused, f"screenshots no page shows: {unused}"


def test_crm_examples_are_valid_documents() -> None:
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(REPO / "web" / "crm" / "crm.xsd")))
    examples = re.findall(r"```xml\n(.*?)```", _page("reference/crm-api.md"), flags=re.S)
    assert len(examples) >= 4
    for example in examples:
        document = etree.fromstring(example.encode())
        assert schema.validate(document), (example, schema.error_log)


def test_check_mode_names_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "bridge.docgen", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    if shutil.which(mkdocs) is None:
        pytest.fail("mkdocs is not installed in this venv: run `make docs` (make test installs it)")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],  # not --quiet: it hides the warnings
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
