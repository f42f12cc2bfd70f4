"""The dashboard keeps no copy of the vocabulary: metric units and labels, glucose thresholds and alert
rule labels come from GET /api/v1/vocabulary (js/vocab.js). whatif.js is the lead's and out of scope."""

from __future__ import annotations

import re
from importlib import resources

import pytest

JS = resources.files("medtwin.web").joinpath("static", "js")
FILES = sorted(p.name for p in JS.iterdir() if p.name.endswith(".js") and p.name not in {"whatif.js", "vocab.js"})
COPIES = {
    "a display unit": re.compile(r"""["'`](mmHg|°C|/min|mm\[Hg\]|Cel)["'`]"""),
    "a glucose threshold": re.compile(r"""(?:[<>]=?\s*|from:\s*|to:\s*|y:\s*)(54|70|180|250)\b(?!\s*%)"""),
    "an alert rule label": re.compile(r"""["'](hypo-l1|hypo-l2|hyper-l1|hyper-l2|hr-deviation)["']\s*:"""),
}


@pytest.mark.parametrize("name", FILES)
def test_no_vocabulary_copy_in(name: str) -> None:
    text = JS.joinpath(name).read_text(encoding="utf-8")
    found = {what: pattern.findall(text) for what, pattern in COPIES.items()}
    assert not any(found.values()), f"{name} copies the vocabulary: {found}"


def test_the_patterns_do_find_a_copy() -> None:
    sample = 'zones: [{ from: 70, to: 180 }]; unit: "mmHg"; const RULES = { "hypo-l1": "Hypoglycaemia" }'
    assert all(p.search(sample) for p in COPIES.values())
