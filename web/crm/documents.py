"""CRM documents: the hardened parse, the schema check, and the response documents. Pure: bytes in, objects out.

Parsing uses lxml (libxml2) with every door shut: no DTD loading, no entity substitution, no network, no
huge trees, comments and processing instructions dropped. A document that declares a DOCTYPE at all is
refused (``DTD_FORBIDDEN``) whatever it declares, so XXE and billion laughs are never expanded, and no file
or URL is ever read. Size is checked by the caller before parsing (``TOO_LARGE``). Then the root's
namespace (``WRONG_NAMESPACE``), then the published schema ``crm.xsd`` (``SCHEMA``).

lxml parsers and schema validators are not meant to be shared between threads: each thread gets its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lxml import etree

NS = "urn:bridge:crm:1"
XSD_PATH = Path(__file__).with_name("crm.xsd")
OPERATIONS = (
    "createSubscriber",
    "modifySubscriber",
    "suspendSubscriber",
    "resumeSubscriber",
    "deleteSubscriber",
    "querySubscriber",
    "createCompany",
    "modifyCompany",
)

# Stable negative acknowledgement codes (crm.xsd NackCode).
MALFORMED = "MALFORMED"
DTD_FORBIDDEN = "DTD_FORBIDDEN"
TOO_LARGE = "TOO_LARGE"
WRONG_NAMESPACE = "WRONG_NAMESPACE"
SCHEMA = "SCHEMA"
TRANSACTION_REUSED = "TRANSACTION_REUSED"
NOT_ACTIVE = "NOT_ACTIVE"
INTERNAL = "INTERNAL"


class DocumentError(Exception):
    """The request document cannot be acted on; ``code`` is the negative acknowledgement's."""

    def __init__(self, code: str, message: str, *, transaction: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transaction = transaction


@dataclass(frozen=True)
class CrmRequest:
    transaction: str
    operation: str
    fields: dict[str, str] = field(default_factory=dict)
    """Child elements by local name (``login`` becomes ``username`` / ``password``); absent ones are absent."""


_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
            remove_comments=True, remove_pis=True, collect_ids=False,
        )  # fmt: skip
    return parser


def schema() -> etree.XMLSchema:
    compiled: etree.XMLSchema | None = getattr(_local, "schema", None)
    if compiled is None:
        compiled = _local.schema = etree.XMLSchema(etree.parse(str(XSD_PATH), _parser()))
    return compiled


def _parse(data: bytes) -> Any:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise DocumentError(DTD_FORBIDDEN, "documents may not declare a DOCTYPE or entities") from exc
        raise DocumentError(MALFORMED, f"not well-formed XML: {exc.msg}") from exc
    if root is None:
        raise DocumentError(MALFORMED, "empty document")
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise DocumentError(DTD_FORBIDDEN, "documents may not declare a DOCTYPE or entities")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise DocumentError(DTD_FORBIDDEN, "documents may not use entity references")
    return root


def parse_request(data: bytes) -> CrmRequest:
    """The request in ``data``, checked against ``crm.xsd``; :class:`DocumentError` otherwise."""
    root = _parse(data)
    qname = etree.QName(root)
    transaction = str(root.get("transaction", ""))[:64]
    if qname.namespace != NS:
        raise DocumentError(
            WRONG_NAMESPACE, f"the root element must be in namespace {NS}, not {qname.namespace or 'none'}"
        )
    validator = schema()
    if not validator.validate(root):
        errors: Any = validator.error_log  # lxml-stubs lack _ErrorLog.last_error
        error = errors.last_error
        text = f"line {error.line}: {error.message}" if error is not None else "does not match crm.xsd"
        raise DocumentError(SCHEMA, text, transaction=transaction)
    operation = root[0]
    fields: dict[str, str] = {}
    for child in operation:
        name = etree.QName(child).localname
        if name == "login":
            for part in child:
                fields[etree.QName(part).localname] = part.text or ""
        else:
            fields[name] = (child.text or "").strip()
    return CrmRequest(transaction=transaction, operation=etree.QName(operation).localname, fields=fields)


# --- responses --------------------------------------------------------------------------------------


def _el(parent: Any, name: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{NS}}}{name}", {k: v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def _document(transaction: str) -> Any:
    root = etree.Element(f"{{{NS}}}response", nsmap=cast(Any, {None: NS}))
    if transaction:
        root.set("transaction", transaction)
    return root


def _bytes(root: Any) -> bytes:
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def nack(code: str, text: str, *, transaction: str = "", field_name: str = "", active_node: str = "") -> bytes:
    root = _document(transaction)
    element = _el(root, "nack", code=code)
    _el(element, "text", text)
    if field_name:
        _el(element, "field", field_name)
    if active_node:
        _el(element, "activeNode", active_node)
    return _bytes(root)


@dataclass(frozen=True)
class SubscriberAck:
    id: int
    status: str
    company_id: int
    company: str
    name: str
    mobile: str
    email: str
    prepaid: bool
    balance: str | None
    portal_login: str
    short_code: str
    common_dnis: str
    pool: list[tuple[int, str]]


@dataclass(frozen=True)
class CompanyAck:
    id: int
    name: str
    timezone: str


def ack(operation: str, result: SubscriberAck | CompanyAck, *, transaction: str) -> bytes:
    root = _document(transaction)
    element = _el(root, "ack", operation=operation)
    if isinstance(result, CompanyAck):
        company = _el(element, "company", id=str(result.id))
        _el(company, "name", result.name)
        _el(company, "timezone", result.timezone)
        return _bytes(root)
    sub = _el(element, "subscriber", id=str(result.id), status=result.status)
    _el(sub, "company", result.company, id=str(result.company_id))
    _el(sub, "name", result.name)
    _el(sub, "mobile", result.mobile)
    _el(sub, "email", result.email)
    _el(sub, "prepaid", "true" if result.prepaid else "false")
    if result.balance is not None:
        _el(sub, "balance", result.balance)
    if result.portal_login:
        _el(sub, "portalLogin", result.portal_login)
    if result.short_code:
        _el(sub, "shortCode", result.short_code)
    dial_in = _el(sub, "dialIn")
    if result.common_dnis:
        _el(dial_in, "common", result.common_dnis)
    for slot, number in result.pool:
        _el(dial_in, "dnis", number, slot=str(slot))
    return _bytes(root)
