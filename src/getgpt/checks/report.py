"""A checker run's results, as a table for people or JSON for CI.

:class:`Table` writes the table a result at a time, so ``getgpt check`` prints each line as its
check ends. A failure is written in full -- its evidence, and a hint when its cause is a usual
mistake -- once; the failures right after it with the same evidence and hint (one cause: no
server there, no key, the wrong path) are named on one line after it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .battery import Result
from .words import Words

__all__ = ["Report", "Table"]

#: Where the line naming the failures of one cause wraps.
WIDTH = 100


class Table:
    """The report's lines, given a result at a time; ``ids`` are the checks to come (for the width)."""

    def __init__(self, url: str, protocol: str, ids: Sequence[str], words: Words) -> None:
        self.url = url
        self.protocol = protocol
        self.words = words
        self.width = max((len(i) for i in ids), default=0)
        self.marks = {status: words(f"table.{status}") for status in ("pass", "fail", "n/a")}
        self.mark_width = max(len(mark) for mark in self.marks.values())
        self._cause: tuple[str, str] | None = None
        self._same: list[str] = []

    def header(self) -> list[str]:
        return [self.words("table.header", url=self.url, protocol=self.protocol), ""]

    def add(self, result: Result) -> list[str]:
        """The lines ready to print once ``result`` is in: a failure with the cause just seen
        waits, to join the one line naming them all."""
        cause = (result.evidence, result.hint)
        if result.status == "fail" and cause == self._cause:
            self._same.append(result.id)
            return []
        lines = self.flush()
        self._cause = cause if result.status == "fail" else None
        optional = "" if result.required else " " + self.words("table.optional")
        mark = f"{self.marks[result.status]:<{self.mark_width}}"
        lines.append(f"  {mark}  {result.id:<{self.width}}  {result.title}{optional}")
        indent = " " * (self.mark_width + self.width + 6)
        if result.evidence and result.status != "pass":
            lines.append(indent + " ".join(result.evidence.split()))
        if result.hint:
            lines.append(indent + self.words("table.hint", hint=result.hint))
        return lines

    def flush(self) -> list[str]:
        """The line naming the failures held back for their cause, if any."""
        if not self._same:
            return []
        text = self.words("table.same_cause", ids=", ".join(self._same))
        self._same = []
        start = f"  {self.marks['fail']:<{self.mark_width}}  "
        return textwrap.wrap(
            text, WIDTH, initial_indent=start, subsequent_indent=" " * len(start), break_on_hyphens=False
        )

    def summary(self, report: Report) -> list[str]:
        counts = report.counts()
        failed = [r.id for r in report.results if r.required and r.status == "fail"]
        verdict = (
            self.words("table.conforms")
            if report.ok
            else self.words("table.does_not_conform", failed=", ".join(failed))
        )
        return [
            "",
            self.words(
                "table.summary",
                passed=counts["pass"],
                failed=counts["fail"],
                na=counts["n/a"],
                verdict=verdict,
            ),
        ]


@dataclass
class Report:
    url: str
    protocol: str
    results: Sequence[Result]
    #: The language of the table's words (the results carry their own).
    language: str = "en"
    words: Words = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.words = Words(self.language)

    @property
    def ok(self) -> bool:
        """True when no required check failed (the exit status is 0 only then)."""
        return not any(r.required and r.status == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in ("pass", "fail", "n/a")}

    def table(self) -> str:
        table = Table(self.url, self.protocol, [r.id for r in self.results], self.words)
        lines = table.header()
        for result in self.results:
            lines += table.add(result)
        lines += table.flush()
        return "\n".join(lines + table.summary(self))

    def json(self) -> str:
        return json.dumps(
            {
                "url": self.url,
                "protocol": self.protocol,
                "ok": self.ok,
                "counts": self.counts(),
                "checks": [asdict(r) for r in self.results],
            },
            ensure_ascii=False,
            indent=2,
        )
