"""CRM request documents for the tests (and the bench): one builder per operation."""

from __future__ import annotations

NS = "urn:bridge:crm:1"


def request(transaction: str, operation: str, body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<request xmlns="{NS}" transaction="{transaction}">'
        f"<{operation}>{body}</{operation}></request>"
    ).encode()


def create_company(transaction: str, name: str, timezone: str = "Europe/Paris") -> bytes:
    return request(transaction, "createCompany", f"<name>{name}</name><timezone>{timezone}</timezone>")


def modify_company(transaction: str, company_id: int, name: str) -> bytes:
    return request(transaction, "modifyCompany", f"<id>{company_id}</id><name>{name}</name>")


def create_subscriber(
    transaction: str, *, company: str, name: str, mobile: str, username: str = "", password: str = "",
    email: str = "", prepaid: bool = False, balance: str = "",
) -> bytes:  # fmt: skip
    body = f"<company>{company}</company><name>{name}</name><mobile>{mobile}</mobile>"
    if email:
        body += f"<email>{email}</email>"
    body += f"<prepaid>{'true' if prepaid else 'false'}</prepaid>"
    if balance:
        body += f"<balance>{balance}</balance>"
    if username:
        body += f"<login><username>{username}</username><password>{password}</password></login>"
    return request(transaction, "createSubscriber", body)


def modify_subscriber(transaction: str, subscriber_id: int, **fields: str) -> bytes:
    body = f"<id>{subscriber_id}</id>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return request(transaction, "modifySubscriber", body)


def by_id(transaction: str, operation: str, subscriber_id: int) -> bytes:
    return request(transaction, operation, f"<id>{subscriber_id}</id>")


XXE = f"""<?xml version="1.0"?>
<!DOCTYPE request [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<request xmlns="{NS}" transaction="evil-1"><querySubscriber><mobile>&secret;</mobile></querySubscriber></request>
""".encode()

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + f']>\n<request xmlns="{NS}" transaction="evil-2"><createCompany><name>&lol9;</name></createCompany></request>'
).encode()

WRONG_NAMESPACE = (
    b'<request xmlns="urn:other:1" transaction="evil-3"><createCompany><name>X</name></createCompany></request>'
)

SCHEMA_VIOLATION = request("evil-4", "createSubscriber", "<name>no company</name><mobile>+15551230009</mobile>")

MALFORMED = b"<request xmlns='urn:bridge:crm:1' transaction='evil-5'><createCompany>"


def oversized(size: int) -> bytes:
    padding = "x" * size
    return request("evil-6", "createCompany", f"<name>{padding}</name>")
