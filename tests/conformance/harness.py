"""Shared helpers of the conformance harness (like scikit-learn's ``check_estimator``): what every registered
model, twin kind and drug must pass. The alert-rule checks (test_alert_rules.py) live in this folder too.

The test-only kinds under ``tests/twinkinds/`` are loaded first, so a kind that lives only in the test suite
is held to the same checks as the shipped ones.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medtwin.model.kinds import TwinKind, kinds
from medtwin.model.simulate import simulate
from medtwin.model.spec import Model
from medtwin.model.timeline import Timeline

Array = NDArray[np.float64]
TEST_KINDS = Path(__file__).resolve().parents[1] / "twinkinds"


def load_test_kinds() -> None:
    """Import every module of tests/twinkinds (each registers its kind), once."""
    for path in sorted(TEST_KINDS.glob("*.py")):
        if path.name.startswith("test_") or path.stem in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)


def all_kinds() -> dict[str, TwinKind]:
    load_test_kinds()
    return kinds()


def population(kind: TwinKind, n: int, rng: np.random.Generator) -> Array:
    """(n, P) rows around the kind's base: log-normal with each parameter's declared population SD."""
    model = kind.model
    sd = np.array([p.prior_sd_log for p in model.parameters])
    fitted = kind.personalisation
    for name, value in fitted.prior_sd_log.items():
        sd[model.parameter_index(name)] = value
    rows = np.repeat(kind.base(), n, axis=0)
    return np.asarray(rows * np.exp(rng.standard_normal(rows.shape) * sd), dtype=float)


def example(kind: TwinKind) -> Timeline:
    return Timeline.from_dict(kind.model, kind.example_scenario)


def observations(kind: TwinKind, n: int = 6) -> dict[str, Any]:
    """Noise-free observations of the kind's observed output at ``n`` times of its example scenario."""
    model = kind.model
    timeline = example(kind)
    output = kind.personalisation.observed_output
    run = simulate(model, kind.base(), timeline)
    pick = np.linspace(1, run.t.size - 1, n).astype(int)
    return {"scenario": dict(kind.example_scenario), "output": output, "t": run.t[pick].tolist(),
            "values": run.output(output)[pick, 0].tolist()}


def model_of(kind: TwinKind) -> Model:
    return kind.model
