"""`make bench`: print each figure and write .bench/results.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.kusto_parser import parse_all

COMMANDS = [f".show database db{n} principals" for n in range(8)]


def parser_batch_speedup() -> float:
    """Parsing N texts in one node run versus one run per text (why the harness batches)."""
    start = time.perf_counter()
    for text in COMMANDS:
        parse_all([text])
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    parse_all(COMMANDS)
    batched = time.perf_counter() - start
    return one_by_one / batched


def main() -> None:
    results = {"parser_batch_speedup": round(parser_batch_speedup(), 2)}
    for name, value in results.items():
        print(f"{name:28} {value}")
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
