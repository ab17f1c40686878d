"""Companies, subscribers and portal logins.

- A company's name (1 to 120 characters) is unique under :func:`~bridge.provisioning.names.name_key`;
  its time zone is an IANA name.
- A subscriber's mobile is stored in E.164 and registered once; its name is 1 to 120 characters.
- A portal login's username (1 to 80 characters) is unique; a new login needs a password of at least
  :data:`PASSWORD_MIN` characters, stored only as a werkzeug salted hash (scrypt by default, the same
  ``generate_password_hash`` the portal checks with ``check_password_hash``). A subscriber's login is
  active while the subscriber is.
- A subscriber's e-mail is empty or one ``local@domain`` address of at most 254 characters; a prepaid
  balance has two decimals and lies within +/- :data:`BALANCE_MAX`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from bridge.db.models import Account, Company, Role, Subscriber, SubscriberStatus
from bridge.phone import PhoneError, to_e164
from bridge.provisioning.errors import EXISTS, UNKNOWN, ProvisioningError
from bridge.provisioning.names import name_key

COMPANY_NAME_MAX = 120
SUBSCRIBER_NAME_MAX = 120
USERNAME_MAX = 80
PASSWORD_MIN = 8
EMAIL_MAX = 254
BALANCE_MAX = Decimal("9999999999.99")
_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


# --- companies ------------------------------------------------------------------------------------


def find_company(session: Session, name: str) -> Company:
    """The company called ``name`` (same name under ``name_key``); :data:`UNKNOWN` error when none is."""
    key = name_key(name.strip())
    found = next((c for c in session.scalars(select(Company)) if name_key(c.name) == key), None)
    if found is None:
        raise ProvisioningError(f"no company named {name!r}", field="company", code=UNKNOWN)
    return found


def check_timezone(name: str) -> str:
    name = name.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProvisioningError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)", field="timezone"
        ) from exc
    return name


def save_company(session: Session, *, name: str, timezone: str = "UTC", company: Company | None = None) -> Company:
    """Create a company (``company=None``) or rename ``company`` / change its time zone."""
    name = name.strip()
    if not 0 < len(name) <= COMPANY_NAME_MAX:
        raise ProvisioningError(f"the company name needs 1 to {COMPANY_NAME_MAX} characters", field="name")
    key = name_key(name)
    if any(name_key(c.name) == key and c is not company for c in session.scalars(select(Company))):
        raise ProvisioningError(f"company {name!r} exists", field="name", code=EXISTS)
    timezone = check_timezone(timezone or "UTC")
    if company is None:
        company = Company()
        session.add(company)
    company.name, company.timezone = name, timezone
    session.flush()
    return company


# --- portal logins --------------------------------------------------------------------------------


def check_username(session: Session, username: str, account: Account | None = None) -> str:
    """``username`` stripped, when it is 1 to 80 characters and no other account has it."""
    username = username.strip()
    if not 0 < len(username) <= USERNAME_MAX:
        raise ProvisioningError(f"the username needs 1 to {USERNAME_MAX} characters", field="username")
    other = session.scalars(select(Account).where(Account.username == username)).first()
    if other is not None and other is not account:
        raise ProvisioningError(f"username {username!r} is taken", field="username", code=EXISTS)
    return username


def hash_password(password: str) -> str:
    """The stored form of a new password (werkzeug's salted hash); refuses one shorter than 8."""
    if len(password) < PASSWORD_MIN:
        raise ProvisioningError(f"the password needs at least {PASSWORD_MIN} characters", field="password")
    return generate_password_hash(password)


def save_account(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str = "",
    company_id: int | None = None,
    active: bool = True,
    account: Account | None = None,
) -> Account:
    """Create (``account=None``, password required) or update an operator or company admin login.

    An operator belongs to no company, a company admin to one. An empty ``password`` keeps the old one.
    """
    username = check_username(session, username, account)
    if role is Role.COMPANY_ADMIN and not company_id:
        raise ProvisioningError("a company admin needs a company", field="company")
    if role is Role.OPERATOR and company_id:
        raise ProvisioningError("an operator belongs to no company", field="company")
    if account is None and not password:
        raise ProvisioningError("a new login needs a password", field="password")
    hashed = hash_password(password) if password else None
    if account is None:
        account = Account(password_hash="")
        session.add(account)
    account.username, account.role, account.active = username, role, active
    if role is not Role.SUBSCRIBER:
        account.company_id = company_id or None
    if hashed is not None:
        account.password_hash = hashed
    session.flush()
    return account


# --- subscribers ----------------------------------------------------------------------------------


def _mobile(session: Session, mobile: str, default_country: str, subscriber: Subscriber | None) -> str:
    try:
        e164 = to_e164(mobile, default_country)
    except PhoneError as exc:
        raise ProvisioningError(str(exc), field="mobile") from exc
    other = session.scalars(select(Subscriber).where(Subscriber.mobile == e164)).first()
    if other is not None and other is not subscriber:
        raise ProvisioningError(f"mobile {e164} is already registered", field="mobile", code=EXISTS)
    return e164


def check_email(email: str) -> str:
    """``email`` stripped, when empty or one plausible address (the mailbox itself is the CRM's business)."""
    email = email.strip()
    if email and (len(email) > EMAIL_MAX or not _EMAIL.match(email)):
        raise ProvisioningError("not an e-mail address", field="email")
    return email


def check_balance(balance: Decimal | str | None) -> Decimal | None:
    """A prepaid balance as a two-decimal ``Decimal`` (``None`` stays ``None``)."""
    if balance is None:
        return None
    try:
        value = Decimal(str(balance).strip())
    except InvalidOperation as exc:
        raise ProvisioningError(f"not an amount: {balance!r}", field="balance") from exc
    if not value.is_finite() or abs(value) > BALANCE_MAX or value != value.quantize(Decimal("0.01")):
        raise ProvisioningError("an amount with at most two decimals and ten digits", field="balance")
    return value.quantize(Decimal("0.01"))


def save_subscriber(
    session: Session,
    *,
    company_id: int,
    name: str,
    mobile: str,
    default_country: str,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    prepaid: bool = False,
    username: str = "",
    password: str = "",
    subscriber: Subscriber | None = None,
    email: str | None = None,
    balance: Decimal | str | None = None,
) -> tuple[Subscriber, Account | None]:
    """Create (``subscriber=None``) or update a subscriber, with its portal login when ``username`` is given
    (created, or renamed; an empty ``password`` keeps the old one). Returns the subscriber and its login.

    ``email`` and ``balance``: ``None`` keeps the current value (none on a new subscriber)."""
    name = name.strip()
    if not 0 < len(name) <= SUBSCRIBER_NAME_MAX:
        raise ProvisioningError(f"1 to {SUBSCRIBER_NAME_MAX} characters", field="name")
    if session.get(Company, company_id) is None:
        raise ProvisioningError("choose a company", field="company", code=UNKNOWN)
    e164 = _mobile(session, mobile, default_country, subscriber)
    email = None if email is None else check_email(email)
    amount = check_balance(balance)
    account = None
    if subscriber is not None and subscriber.id is not None:
        account = session.scalars(select(Account).where(Account.subscriber_id == subscriber.id)).first()
    if username.strip():
        username = check_username(session, username, account)
        if account is None and not password:
            raise ProvisioningError("a new login needs a password", field="password")
    hashed = hash_password(password) if username and password else None
    if subscriber is None:
        subscriber = Subscriber()
        session.add(subscriber)
    subscriber.company_id, subscriber.name, subscriber.mobile = company_id, name, e164
    subscriber.status, subscriber.prepaid = status, prepaid
    if email is not None:
        subscriber.email = email
    if amount is not None:
        subscriber.balance = amount  # type: ignore[assignment]  # Numeric column, mapped as float in the model
    session.flush()
    if username:
        if account is None:
            account = Account(role=Role.SUBSCRIBER, password_hash="")
            session.add(account)
        account.username, account.company_id, account.subscriber_id = username, company_id, subscriber.id
        if hashed is not None:
            account.password_hash = hashed
    if account is not None:
        account.active = subscriber.status == SubscriberStatus.ACTIVE
    session.flush()
    return subscriber, account
