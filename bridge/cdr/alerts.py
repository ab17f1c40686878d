"""Alert mail (smtplib to ``[alerts]``): a delivery target is down, and again when it recovers."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from typing import Protocol

from bridge.cdr.health import Alert, AlertDown, AlertRecovered
from bridge.config import AlertsConfig

log = logging.getLogger(__name__)


class Mailer(Protocol):
    def send(self, subject: str, body: str) -> None:
        """Send one alert mail; must not raise (an alert that cannot be sent is logged)."""


def render_alert(alert: Alert, *, node: str) -> tuple[str, str]:
    """Subject and body of an alert mail (pure)."""
    since = alert.since.isoformat(sep=" ", timespec="seconds")
    if isinstance(alert, AlertRecovered):
        now = alert.now.isoformat(sep=" ", timespec="seconds")
        return (
            f"[bridge {node}] CDR target {alert.target} recovered",
            f"CDR delivery target {alert.target!r} is reachable again at {now} UTC "
            f"(failing since {since} UTC).\nEvery file spooled meanwhile is being delivered.\n",
        )
    error = alert.error if isinstance(alert, AlertDown) else ""
    return (
        f"[bridge {node}] CDR target {alert.target} DOWN",
        f"CDR delivery target {alert.target!r} has been failing since {since} UTC.\n"
        f"Last error: {error}\nFiles stay in the spool and are retried with backoff.\n",
    )


class SmtpMailer:
    """Sends alert mail through the ``[alerts]`` SMTP relay; disabled when no host or recipients."""

    def __init__(self, config: AlertsConfig, *, timeout_s: float = 10.0) -> None:
        self.config = config
        self.timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_host and self.config.recipients)

    def send(self, subject: str, body: str) -> None:
        if not self.enabled:
            log.warning("alert not mailed (no [alerts] smtp_host/recipients): %s", subject)
            return
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.config.recipients)
        message["Subject"] = subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self.config.smtp_host, self.config.smtp_port, timeout=self.timeout_s) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("alert mail failed (%s): %s", exc, subject)
