"""Checks KQL queries and control commands with Microsoft's Kusto parser, one node run per batch."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("kusto_parse.js")


@dataclass(frozen=True)
class ParseResult:
    text: str
    kind: str
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_all(texts: list[str]) -> list[ParseResult]:
    """Parse every text in one node process (loading the parser costs about two seconds)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; it runs Microsoft's Kusto parser")
    done = subprocess.run(
        [node, str(SCRIPT)], input=json.dumps(texts), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Kusto parser failed: {done.stderr.strip()[:2000]}")
    return [
        ParseResult(r["text"], r["kind"], tuple(f"{e['code']}: {e['message']} (at {e['start']})" for e in r["errors"]))
        for r in json.loads(done.stdout)
    ]
