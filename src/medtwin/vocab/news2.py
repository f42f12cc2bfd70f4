"""The NEWS2 chart as reference data: parameter bands, clinical-risk thresholds and responses of the Royal
College of Physicians' NEWS2 (2017), transcribed in ``vocab/data/news2_rcp2017.toml`` with the citation.

Scoring is :mod:`medtwin.alerts.news2`'s job (it parses the same file and checks that the bands are
contiguous); this module only reads the file and serves it as it is.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any, Final

__all__ = ["NEWS2_FILE", "news2_chart_text", "news2_reference"]

NEWS2_FILE: Final = "news2_rcp2017.toml"


@lru_cache(maxsize=1)
def news2_chart_text() -> str:
    return resources.files("medtwin.vocab").joinpath("data", NEWS2_FILE).read_text(encoding="utf-8")


def news2_reference() -> dict[str, Any]:
    """The chart as JSON (the vocabulary endpoint's ``news2``): source, version, parameters with their bands
    (``min``/``max`` inclusive at the chart's resolution, absent: open), risk thresholds, responses."""
    raw: dict[str, Any] = tomllib.loads(news2_chart_text())
    return {"source": raw["source"], "version": raw["version"], "parameters": raw["parameters"],
            "risk": raw["risk"], "response": raw["response"]}
