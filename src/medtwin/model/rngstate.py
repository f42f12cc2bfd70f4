"""A ``numpy.random.Generator``'s state as JSON and back, exactly (a stored filter resumes where it stopped).

The bit generator's state holds 128-bit integers, beyond JSON numbers' exact range in most readers, so every
integer is written as ``{"int": "<decimal>"}`` (the format the live glucose filter has always stored).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def generator_to_json(rng: np.random.Generator) -> dict[str, Any]:
    state = _stringify(rng.bit_generator.state)
    assert isinstance(state, dict)
    return state


def generator_from_json(data: Any) -> np.random.Generator:
    """The generator stored by :func:`generator_to_json` (KeyError/TypeError/ValueError when malformed)."""
    state = _integerify(data)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"int": str(value)}
    return value


def _integerify(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {k: _integerify(v) for k, v in value.items()}
    return value
