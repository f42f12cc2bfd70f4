from __future__ import annotations

from typing import Any


def single_unit(beds: int, rate: float, mean_h: float, queue_capacity: int | None = None) -> dict[str, Any]:
    """An M/M/c (or M/M/c/K) model document."""
    unit: dict[str, Any] = {"name": "desk", "beds": beds, "los": {"dist": "exponential", "mean_h": mean_h}}
    if queue_capacity is not None:
        unit["queue_capacity"] = queue_capacity
    return {"name": "mmc", "source": "test", "units": [unit],
            "arrivals": [{"name": "a", "entry": "desk", "rate_per_hour": [rate]}]}


def network() -> dict[str, Any]:
    """A small network: triage -> treatment -> (exit | ward), exponential stays, constant capacity."""
    return {"name": "net", "source": "test",
            "units": [
                {"name": "triage", "beds": 2, "los": {"dist": "exponential", "mean_h": 0.25},
                 "routing": {"treatment": 1.0}},
                {"name": "treatment", "beds": 4, "los": {"dist": "exponential", "mean_h": 1.0},
                 "routing": {"exit": 0.7, "ward": 0.3}},
                {"name": "ward", "beds": 4, "los": {"dist": "exponential", "mean_h": 3.0}},
            ],
            "arrivals": [{"name": "a", "entry": "triage", "rate_per_hour": [3.0]}]}
