"""Call detail records: the per-leg billing record, CSV files, delivery to the provider, reports, feed.

Layout (pure cores first, then the glue):

- :mod:`bridge.cdr.csvformat` -- the CSV columns and row formatting (pure, no clock, no I/O);
- :mod:`bridge.cdr.health` -- per-target delivery health: backoff and alert decisions (pure, ``now`` in);
- :mod:`bridge.cdr.writer` -- ``write_cdr(session, leg)``, called by the conference service when a leg ends;
- :mod:`bridge.cdr.export` -- streamed CSV export (``bridge cdr export``);
- :mod:`bridge.cdr.reports` -- usage aggregates for the portal;
- :mod:`bridge.cdr.spool` -- hourly and nightly-summary files in ``<data_dir>/spool/cdr``;
- :mod:`bridge.cdr.transports` -- rsync over ssh, SFTP (paramiko), FTP/FTPS (ftplib);
- :mod:`bridge.cdr.delivery` -- the push: ledger, failover, backoff, alert mail;
- :mod:`bridge.cdr.retention` -- the nightly purge;
- :mod:`bridge.cdr.jobs` -- APScheduler jobs inside the engine;
- :mod:`bridge.cdr.feed` -- the real-time TCP feed.
"""

from __future__ import annotations


class CdrError(Exception):
    """Base exception of the CDR package."""


class DeliveryError(CdrError):
    """A delivery target could not take a file (the peer is down, refused us, or failed mid-way)."""


class HostKeyError(DeliveryError):
    """The SSH server's host key is unknown or differs from known_hosts: refused before anything is sent."""
