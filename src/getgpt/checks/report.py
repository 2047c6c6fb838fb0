"""A checker run's results, as a table for people or JSON for CI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .battery import Result

__all__ = ["Report"]

_MARK = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A "}


@dataclass
class Report:
    url: str
    protocol: str
    results: Sequence[Result]

    @property
    def ok(self) -> bool:
        """True when no required check failed (the exit status is 0 only then)."""
        return not any(r.required and r.status == "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in ("pass", "fail", "n/a")}

    def table(self) -> str:
        width = max(len(r.id) for r in self.results)
        lines = [f"getgpt check {self.url} --protocol {self.protocol}", ""]
        for r in self.results:
            optional = "" if r.required else " (optional)"
            lines.append(f"  {_MARK[r.status]}  {r.id:<{width}}  {r.title}{optional}")
            if r.evidence and r.status != "pass":
                lines.append(f"        {'':<{width}}  {' '.join(r.evidence.split())}")
        counts = self.counts()
        failed = [r.id for r in self.results if r.required and r.status == "fail"]
        summary = f"{counts['pass']} passed, {counts['fail']} failed, {counts['n/a']} not applicable"
        verdict = "conforms" if self.ok else f"does not conform: {', '.join(failed)}"
        return "\n".join([*lines, "", f"{summary} -- {verdict}"])

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
