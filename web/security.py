"""Login throttling (pure: the caller passes ``now``) and the role guard."""

from __future__ import annotations

import collections
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask_login
from flask import abort
from flask_login import current_user

from bridge.db.models import Account, Role

F = TypeVar("F", bound=Callable[..., Any])


class LoginRateLimiter:
    """At most ``limit`` failed attempts per client address within ``window_s`` (sliding window)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, collections.deque[float]] = {}

    def allowed(self, client: str, now: float) -> bool:
        failures = self._failures.get(client)
        if failures is None:
            return True
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return True
        return len(failures) < self.limit

    def failed(self, client: str, now: float) -> None:
        self._failures.setdefault(client, collections.deque()).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            oldest = min(self._failures, key=lambda key: self._failures[key][-1])
            del self._failures[oldest]


def is_locked(account: Account, now: dt.datetime) -> bool:
    return account.locked_until is not None and account.locked_until > now


def record_failure(account: Account, now: dt.datetime, *, attempts: int, lockout_s: float) -> bool:
    """Count a failed password; lock the account after ``attempts`` failures. True when it just locked."""
    account.failed_logins = (account.failed_logins or 0) + 1
    if account.failed_logins >= attempts:
        account.locked_until = now + dt.timedelta(seconds=lockout_s)
        account.failed_logins = 0
        return True
    return False


def record_success(account: Account) -> None:
    account.failed_logins = 0
    account.locked_until = None


def login_required(view: F) -> F:
    """flask-login's ``login_required`` with its type kept."""
    return cast(F, flask_login.login_required(view))


def roles_required(*roles: Role) -> Callable[[F], F]:
    """Login required, and one of ``roles``; other roles get 404 like objects they may not see."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(404)
            return view(*args, **kwargs)

        return cast(F, login_required(wrapped))

    return decorator


ALL_ROLES = (Role.OPERATOR, Role.COMPANY_ADMIN, Role.SUBSCRIBER)
STAFF = (Role.OPERATOR, Role.COMPANY_ADMIN)
