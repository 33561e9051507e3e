"""Sections of BENCHMARKS.md that benchmarks other than `make bench` write, each between its
own markers (`<!-- NAME:begin -->` ... `<!-- NAME:end -->`): the proxy's and the GPU's.
`make bench` regenerates the rest of the file and keeps them as they are."""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"<!-- (?P<name>[a-z0-9-]+):begin -->.*?<!-- (?P=name):end -->", re.S)


def block(name: str, body: str) -> str:
    return f"<!-- {name}:begin -->\n{body.strip()}\n<!-- {name}:end -->"


def kept(path: Path) -> list[str]:
    """Every marked section of `path`, in order (none if it does not exist)."""
    return [m.group(0) for m in BLOCK.finditer(path.read_text())] if path.exists() else []


def replace(path: Path, name: str, body: str) -> None:
    """Puts `body` between `name`'s markers in `path`, in place of what was there, or at the end."""
    text = path.read_text() if path.exists() else ""
    new = block(name, body)
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: new, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)
