"""The CRM XML API's listener: HTTPS with mutual TLS on ``api.listen``, apart from the portal.

Why a werkzeug server in its own process (``bridge api serve``, a child of ``bridge run``): the portal's
gunicorn has one TLS setting for all its sockets, and asking for client certificates there would prompt
the portal's users; gunicorn also hides the peer certificate from the app. The CRM sends a few requests a
second, so a threaded server with a connection cap is plenty, and a separate process keeps a parser bug
away from the engine and the portal.

Per connection (in its own thread, never in the accept loop, so a silent client blocks nobody): the TLS
handshake under ``api.handshake_timeout_s``, where OpenSSL refuses a client without a certificate chaining
to ``api.client_ca`` (or expired, or not for client auth); then the subject allow-list, checked before any
HTTP byte is read -- a subject not on the list is closed at once. ``api.max_connections`` bounds the
threads; one more connection is closed unanswered.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from bridge.api import SUBJECT_KEY
from bridge.api.ca import CaFiles, subject_of
from bridge.configschema import ApiConfig, Config, ConfigError

log = logging.getLogger(__name__)
"""The WSGI environ key holding the client certificate's RFC 4514 subject."""


def tls_files(config: Config) -> tuple[str, str, str]:
    """(cert, key, client CA) paths: the configured ones or the lab CA's under ``<data_dir>/api-ca``."""
    api, lab = config.api, CaFiles(config.data_path / "api-ca")
    cert = str(config.resolve(api.tls_cert)) if api.tls_cert else str(lab.server_cert)
    key = str(config.resolve(api.tls_key)) if api.tls_key else str(lab.server_key)
    client_ca = str(config.resolve(api.client_ca)) if api.client_ca else str(lab.ca_cert)
    return cert, key, client_ca


def ssl_context(*, cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Server context for mutual TLS (TLS 1.2+, client certificate required); errors name the ``api.`` key."""
    for name, path in {"tls_cert": cert, "tls_key": key, "client_ca": client_ca}.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"api.{name}: cannot read {path}: {exc.strerror} (see `bridge api ca-init`)") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"api.tls_cert: {cert} with api.tls_key {key} is not a usable pair: {exc}") from exc
    try:
        context.load_verify_locations(cafile=client_ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"api.client_ca: {client_ca} holds no usable CA certificate: {exc}") from exc
    return context


def subject_allowed(subject: str, common_name: str, allowed: Sequence[str]) -> bool:
    """Empty list: any certificate the CA issued; else the RFC 4514 subject or the bare CN is listed."""
    return not allowed or subject in allowed or common_name in allowed


class _Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the CRM may send many documents on one connection

    def make_environ(self) -> Any:
        environ = super().make_environ()
        environ[SUBJECT_KEY] = getattr(self.server, "subjects", {}).get(id(self.request), "")
        return environ


class MtlsServer(ThreadedWSGIServer):
    """werkzeug's threaded server, the TLS handshake moved from ``accept`` into the connection's thread."""

    def __init__(self, host: str, port: int, app: Any, *, context: ssl.SSLContext, api: ApiConfig) -> None:
        super().__init__(host, port, app, handler=_Handler)
        self.ssl_context = context  # set after __init__: werkzeug would wrap the listening socket itself
        self.allowed = list(api.allowed_subjects)
        self.timeout_s = api.handshake_timeout_s
        self.max_connections = api.max_connections
        self.slots = threading.BoundedSemaphore(api.max_connections)
        self.subjects: dict[int, str] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            log.warning("api: %s refused: %d connections open", client_address[0], self.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        assert isinstance(self.ssl_context, ssl.SSLContext)
        request.settimeout(self.timeout_s)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body are separate writes
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("api: %s: TLS handshake refused: %s", client_address[0], exc)
            return
        try:
            der = tls.getpeercert(binary_form=True)
            subject, common_name = subject_of(der) if der else ("", "")
            if not subject_allowed(subject, common_name, self.allowed):
                log.warning("api: %s: client %s is not in api.allowed_subjects", client_address[0], subject)
                return
            self.subjects[id(tls)] = subject
            handler: Any = self.RequestHandlerClass  # socketserver's stubs want the base server type
            handler(tls, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            log.info("api: %s: connection dropped: %s", client_address[0], exc)
        finally:
            self.subjects.pop(id(tls), None)
            _close(tls)


def _close(tls: ssl.SSLSocket) -> None:
    try:
        tls.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    tls.close()


def make_server(config: Config, app: Any) -> MtlsServer:
    from bridge.configcheck import parse_host_port

    host, port = parse_host_port(config.api.listen, "api.listen")
    cert, key, client_ca = tls_files(config)
    return MtlsServer(host, port, app, context=ssl_context(cert=cert, key=key, client_ca=client_ca), api=config.api)


def serve(config: Config, app: Any) -> None:
    """Run the CRM XML API (the WSGI ``app``: ``web.crm``) in the foreground until SIGTERM/SIGINT."""
    server = make_server(config, app)

    def _stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("CRM XML API on https://%s (client certificates required)", config.api.listen)
    server.serve_forever()
    server.server_close()
