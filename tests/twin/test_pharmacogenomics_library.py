"""The drug list the API serves (``GET /drugs``): every drug file read and checked once per call, not once to
list the names and again to load each drug."""

from __future__ import annotations

import pytest

from medtwin.pharmaco import library
from medtwin.twin.pharmacogenomics import drug_library


def test_drug_library_reads_each_drug_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    parse = library.parse_drug

    def counted(text: str, origin: str) -> library.DrugModel:
        parsed.append(origin)
        return parse(text, origin)

    monkeypatch.setattr(library, "parse_drug", counted)
    found = drug_library()
    files = sorted(library.drug_files())
    assert sorted(parsed) == [f"{name}.toml" for name in files]  # once each (twice before: names, then each drug)
    assert [d.name.lower() for d in found] == files  # every shipped file loads, in name order
    assert {d.name.lower(): d.response for d in found}["warfarin"] == "INR"
