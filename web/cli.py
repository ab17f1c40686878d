"""``bridge web``: the portal under gunicorn with TLS (threads, so live views can stream events)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click

from bridge.config import Config

if TYPE_CHECKING:
    from flask import Flask


def gunicorn_options(config: Config, cert: str, key: str, workers: int, threads: int) -> dict[str, Any]:
    return {
        "bind": config.web.listen,
        "certfile": cert,
        "keyfile": key,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": "-",
        "forwarded_allow_ips": "127.0.0.1",
    }


def serve(config: Config, *, workers: int = 2, threads: int = 8) -> None:
    """Run the portal in the foreground until SIGTERM/SIGINT."""
    from gunicorn.app.base import BaseApplication

    from web import create_app
    from web.tls import ensure_certificate

    cert, key = ensure_certificate(config, dt.datetime.now(dt.UTC))
    app = create_app({"BRIDGE": config, "SSE_MAX_STREAMS": max(1, threads - 2)})  # two threads kept for pages
    options = gunicorn_options(config, str(cert), str(key), workers, threads)

    class PortalApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return app

    PortalApplication().run()


@click.command("web")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, help="Threads per worker (live views stream on all but two).")
@click.pass_obj
def web_command(config: Config, workers: int, threads: int) -> None:
    """Serve the HTTPS portal (gunicorn + TLS; self-signed certificate on first run)."""
    serve(config, workers=workers, threads=threads)
