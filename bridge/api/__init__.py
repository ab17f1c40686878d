"""The machine interfaces' plumbing outside the web app: the CRM listener with mutual TLS (:mod:`.server`,
started by ``bridge run`` as a child process, :mod:`.child`), the lab CA (:mod:`.ca`), REST API tokens
(:mod:`.tokens`), idempotent transactions (:mod:`.idempotency`), the HA seam (:mod:`.role`) and the
``bridge api`` commands (:mod:`.cli`). The documents and resources themselves live in ``web.crm`` and
``web.rest``; every change they make goes through :mod:`bridge.provisioning`.
"""

SUBJECT_KEY = "bridge.client_subject"
"""WSGI environ key under which the listener hands the app the verified client certificate's subject."""
