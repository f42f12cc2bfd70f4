"""Model declaration (kept for its old import path): the interface lives in :mod:`medtwin.model.spec`."""

from __future__ import annotations

from medtwin.model.spec import DoseRoute, InputSpec, Model, OutputSpec, ParameterSpec, StateSpec

__all__ = ["DoseRoute", "InputSpec", "Model", "OutputSpec", "ParameterSpec", "StateSpec"]
