"""The server's storage: API keys, the usage ledger and the spend per key (issue 23).

- :mod:`.keys` -- a key's form (``gg-<id>-<secret>``), its hash, what it may do, budget periods;
- :mod:`.schema` -- the tables as numbered migrations, and the ledger's record;
- :mod:`.database` -- :class:`~.database.Database` and :func:`~.database.open_database`, over
  :mod:`.sqlite` (the default: one file, nothing to install) or :mod:`.postgres` (shared by
  replicas);
- :mod:`.ledger` -- the batched writer of usage records.

Nothing here is imported by a server that runs without ``--db``, nor by ``getgpt --help``.
"""
