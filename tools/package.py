"""Build the deployment package: the project minus everything `.funcignore` excludes.

`python -m tools.package [--out .build/healer.zip]` prints the files it packed. azd and Core
Tools honour `.funcignore` the same way (gitignore syntax).
"""

from __future__ import annotations

import argparse
import subprocess
import zipfile
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parent.parent


def package_files(root: Path = ROOT) -> list[str]:
    """Tracked (and untracked, not ignored) files that the deployment package contains."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    ignore = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    return sorted(f for f in listed if (root / f).is_file() and not ignore.match_file(f))


def build(out: Path, root: Path = ROOT) -> list[str]:
    files = package_files(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(root / name, name)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / ".build" / "healer.zip")
    args = parser.parse_args()
    for name in build(args.out):
        print(name)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
