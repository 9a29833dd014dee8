"""Structure check for the HTML reports, for machines without a browser: the document parses with
every element closed in order, loads nothing from outside, and its timeline lists the phases."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Page:
    title: str = ""
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    runs: int = 0
    phases: list[list[str]] = field(default_factory=list)  # per run, the phases of its events in order
    text: str = ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[str] = []
        self._in_title = False
        self._texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.page.external.append(str(values[name]))
        classes = (values.get("class") or "").split()
        if tag == "section" and "run" in classes:
            self.page.runs += 1
            self.page.phases.append([])
        if tag == "li" and "event" in classes:
            phase = next((c.removeprefix("phase-") for c in classes if c.startswith("phase-")), "")
            if self.page.phases:
                self.page.phases[-1].append(phase)
        self._in_title = tag == "title" and "svg" not in self.stack  # the page's, not a chart's
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.page.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            return
        self.stack.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page.title += data
        self._texts.append(data)


def check_html(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    if not text.lstrip().lower().startswith("<!doctype html>"):
        parser.page.errors.append("no <!DOCTYPE html>")
    if parser.stack:
        parser.page.errors.append(f"unclosed: {parser.stack}")
    parser.page.text = " ".join(parser._texts)
    return parser.page


def browser() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def render_in_browser(path: Path) -> str:
    """The DOM as headless Chromium sees it (only where a Chromium is installed)."""
    exe = browser()
    assert exe is not None
    done = subprocess.run(
        [exe, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", path.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout
