"""The NEWS2 chart as reference data: parameter bands, clinical-risk thresholds and responses of the Royal
College of Physicians' NEWS2 (2017), transcribed in ``vocab/data/news2_rcp2017.toml`` with the citation.

It also holds THE one mapping of a score to what people read (:func:`news2_band`, :func:`news2_text`): the
clinical-risk band (RCP 2017 Chart 2: aggregate 0-4 low; a 3 in any single parameter low-medium, an urgent
ward-based response; 5-6 medium; 7 or more high), its label and the alert severity it raises. The alert's
severity and message, the patient list, the live tile, the badge and the report all read it from here.

Scoring is :mod:`medtwin.alerts.news2`'s job (it parses the same file and checks that the bands are
contiguous); this module reads the file and serves it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Final

__all__ = ["NEWS2_FILE", "News2Band", "news2_band", "news2_bands", "news2_chart_text", "news2_reference",
           "news2_text"]

NEWS2_FILE: Final = "news2_rcp2017.toml"


@lru_cache(maxsize=1)
def news2_chart_text() -> str:
    return resources.files("medtwin.vocab").joinpath("data", NEWS2_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return tomllib.loads(news2_chart_text())


@dataclass(frozen=True)
class News2Band:
    """A clinical-risk band of RCP 2017 Chart 2 and how it is shown."""

    name: str  # low | low-medium | medium | high
    label: str  # "medium clinical risk"
    alert_severity: str | None  # the alert severity it raises; None: no alert (low)
    trigger: str  # the RCP trigger ("urgent response")

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "alert_severity": self.alert_severity,
                "trigger": self.trigger}


@lru_cache(maxsize=1)
def news2_bands() -> dict[str, News2Band]:
    """Band name -> :class:`News2Band`, most serious first (the file's order)."""
    bands = {str(b["name"]): News2Band(str(b["name"]), str(b["label"]), str(b["alert_severity"]) or None,
                                       str(b["trigger"])) for b in _raw()["bands"]}
    if list(bands) != ["high", "medium", "low-medium", "low"]:
        raise RuntimeError(f"{NEWS2_FILE}: bands must be high, medium, low-medium, low; got {list(bands)}")
    return bands


def news2_band(aggregate: int, red_score: bool) -> News2Band:
    """The clinical-risk band of an aggregate score, ``red_score``: a 3 in any single parameter (RCP 2017
    Chart 2: >= 7 high, 5-6 medium, a single red score below 5 low-medium, else low)."""
    if aggregate < 0:
        raise ValueError(f"aggregate: must be >= 0, got {aggregate}")
    risk = _raw()["risk"]
    bands = news2_bands()
    if aggregate >= int(risk["high_aggregate"]):
        return bands["high"]
    if aggregate >= int(risk["medium_aggregate"]):
        return bands["medium"]
    return bands["low-medium"] if red_score else bands["low"]


def news2_text(aggregate: int, band: str) -> str:
    """The one sentence for a score: ``"NEWS2 5: medium clinical risk"``."""
    return f"NEWS2 {aggregate}: {news2_bands()[band].label}"


def news2_reference() -> dict[str, Any]:
    """The chart as JSON (the vocabulary endpoint's ``news2``): source, version, parameters with their bands
    (``min``/``max`` inclusive at the chart's resolution, absent: open), risk thresholds, responses, and the
    clinical-risk bands with their labels and alert severities (``risk_bands``, most serious first)."""
    raw = _raw()
    return {"source": raw["source"], "version": raw["version"], "parameters": raw["parameters"],
            "risk": raw["risk"], "response": raw["response"],
            "risk_bands": [band.as_json() for band in news2_bands().values()]}
