"""``getgpt check``: does a server speak the GetGpt protocol (or OpenAI's chat streaming) right?

    from getgpt.checks import Settings, check
    report = check(Settings("http://127.0.0.1:8000/", protocol="getgpt"))
    print(report.table()); raise SystemExit(0 if report.ok else 1)

:mod:`.battery` holds the checks, :mod:`.streams` reads a stream strictly, :mod:`.protocols` makes
the requests, :mod:`.http` sends them on a connection of the checker's own, :mod:`.report` prints,
:mod:`.words` holds what it says in English and Russian.
"""

from __future__ import annotations

from .battery import Battery, Result, Settings
from .report import Report, Table

__all__ = ["Battery", "Report", "Result", "Settings", "Table", "check"]


def check(settings: Settings) -> Report:
    """Run the checks ``settings`` selects against ``settings.url``; the report says which passed.

    ``Battery(settings).run()`` gives the same results one at a time, as each check ends.
    """
    results = list(Battery(settings).run())
    return Report(settings.url, settings.protocol, results, settings.language)
