"""Write smtpd table, filter and queue backends in Python.

smtpd talks to its plug-in programs over pipe-delimited text lines on
stdin/stdout: tables (protocol 0.1) and filters (0.7) exactly as OpenSMTPD
7.8, and queue backends (0.1). This package, standard library only, has:

- :mod:`smtpd_sdk.protocol`: pure parse/format of every line;
- :mod:`smtpd_sdk.table`, :mod:`smtpd_sdk.filter`, :mod:`smtpd_sdk.queue`:
  one ``run(...)`` call turns plain callbacks into a complete backend;
- :mod:`smtpd_sdk.aio`: the same three with ``async`` callbacks and many
  requests in flight;
- :mod:`smtpd_sdk.examples`: runnable backends (``python3 -m ...``).
"""

from __future__ import annotations

from ._runtime import BackendError

__version__ = "0.1.0"

__all__ = ["BackendError", "__version__"]
