"""Example backends, runnable with ``python3 -m smtpd_sdk.examples.NAME``.

- :mod:`.table_static`: a table(5) file served as a table backend;
- :mod:`.filter_guard`: the filter described by the standard filter fixture
  (``protocol-spec/vectors/fixtures/standard.filter``);
- :mod:`.queue_memory`: a queue backend keeping everything in memory.

Each takes ``--asyncio`` to run the :mod:`smtpd_sdk.aio` flavour.
"""
