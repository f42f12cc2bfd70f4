"""What the drug-file tests share: the shipped drug files, a drug folder with some of them replaced, and a
one-place edit of a drug file's text that fails if the pattern is not there."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

SHIPPED = resources.files("medtwin.pharmaco").joinpath("data/drugs")
NAMES = sorted(p.name.removesuffix(".toml") for p in SHIPPED.iterdir() if p.name.endswith(".toml"))
WARFARIN = SHIPPED.joinpath("warfarin.toml").read_text(encoding="utf-8")


def drug_folder(folder: Path, replaced: dict[str, str]) -> Path:
    """A drug folder: every shipped drug file, with each of ``replaced`` (name -> text) instead of the shipped one."""
    for name in NAMES:
        text = replaced.get(name, SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8"))
        (folder / f"{name}.toml").write_text(text, encoding="utf-8")
    return folder


def sub(pattern: str, replacement: str, text: str = WARFARIN) -> str:
    """``text`` (the shipped warfarin file unless given) with the first match of ``pattern`` replaced."""
    changed, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    return changed
