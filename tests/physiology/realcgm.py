"""Real CGM traces for tests and ``benchmarks/bench_forecast.py``: the example data shipped in the source
archive of ``iglu-python`` 0.4.3 (GPL-2, so test-only and never copied into the package), fetched at SETUP
time by ``scripts/setup.sh`` into ``.venv/share/medtwin-realcgm`` (git-ignored), never at test run time.

* ``example_data_5_subject.csv``: 5 people with type 2 diabetes (Broll S, Urbanek J, Buchanan D, et al.
  Interpreting blood GLUcose data with R package iglu. PLoS One 2021;16(4):e0248560);
* ``example_data_hall.csv``: 19 people, most without diabetes (Hall H, Perelman D, Breschi A, et al.
  Glucotypes reveal new patterns of glucose dysregulation. PLoS Biol 2018;16(7):e2005143).

Columns ``id, time, gl`` (mg/dL, local time without a zone); times become minutes from the person's first
reading, duplicates of a time are dropped (the first kept)."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from medtwin.physiology.streaming import Series

REAL_CGM_DIR = Path(__file__).resolve().parents[2] / ".venv" / "share" / "medtwin-realcgm"
FILES = ("example_data_5_subject.csv", "example_data_hall.csv")


def load_traces(directory: Path = REAL_CGM_DIR, files: tuple[str, ...] = FILES) -> list[Series]:
    """Every person of ``files`` as a :class:`Series` (no inputs, no truth); raises FileNotFoundError."""
    out: list[Series] = []
    for name in files:
        people: dict[str, list[tuple[datetime, float]]] = {}
        with (directory / name).open(newline="") as handle:
            for row in csv.DictReader(handle):
                value = row["gl"].strip()
                if value in {"", "NA"}:
                    continue
                people.setdefault(row["id"], []).append((datetime.fromisoformat(row["time"]), float(value)))
        for person, rows in people.items():
            rows.sort()
            t0 = rows[0][0]
            minutes = np.array([(when - t0).total_seconds() / 60 for when, _ in rows])
            values = np.array([v for _, v in rows])
            keep = np.concatenate([[True], np.diff(minutes) > 0])
            out.append(Series(f"{name.split('_')[2].removesuffix('.csv')}:{person}", minutes[keep], values[keep]))
    return out


def traces_or_skip(directory: Path = REAL_CGM_DIR) -> list[Series]:
    """The traces, or skip the test when they were not fetched (fail instead when ``CI=true``)."""
    if not all((directory / f).exists() for f in FILES):
        if os.environ.get("CI") == "true":
            pytest.fail(f"real CGM traces missing in {directory}: run scripts/setup.sh")
        pytest.skip(f"real CGM traces not fetched into {directory} (scripts/setup.sh)")
    return load_traces(directory)
