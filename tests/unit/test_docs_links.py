"""Every relative Markdown link in the README and docs/ points at a file that exists and, with an
#anchor into a Markdown file, at a heading that file has (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_docs_exist_and_the_readme_stays_short() -> None:
    names = {p.name for p in PAGES}
    for page in ("architecture", "backfill", "configuration", "deploy", "runbook", "sandbox", "benchmarks"):
        assert f"{page}.md" in names, f"docs/{page}.md is missing"
    assert {"testing.md", "glossary.md"} <= names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in heading_ids(path):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def heading_ids(path: Path) -> set[str]:
    """GitHub's ids of a page's headings (code spans keep their words, punctuation goes)."""
    ids = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    for line in text.splitlines():
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            ids.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return ids
