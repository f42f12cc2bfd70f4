"""Parameter sets of any model as data files, checked against the model's declarations.

A parameter file is a CSV with the unit in every column name (``"R [mmHg*s/mL]"``) and its citation in
``#`` comment lines (:mod:`medtwin.physiology.parameters` parses it), or a TOML file with a ``[parameters]``
table of ``{value, unit, source}`` and a ``source`` (top level or in its first table, as the drug files
have). :func:`load_parameters` refuses a file without a source, a declared parameter without a column, or a
column whose unit is not the declared one; the error names the file and the entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.spec import Model
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.parameters import parse_parameter_csv


@dataclass(frozen=True)
class ParameterSet:
    """``names`` (n,) rows, ``values`` (n, P) in the model's parameter order, ``units``, ``source``."""

    model: str
    origin: str
    names: tuple[str, ...]
    values: Array
    units: dict[str, str]
    source: str

    def row(self, name: str) -> Array:
        """(1, P) one named row."""
        if name not in self.names:
            raise ModelInputError("row", f"{name!r} is not in {self.origin}; known: {', '.join(self.names[:5])}")
        return self.values[[self.names.index(name)]]


def read_text(location: str) -> tuple[str, str]:
    """Text of ``"package:relative/path"`` (a shipped resource) or of a file path; returns (text, origin)."""
    if ":" in location and not Path(location).exists():
        package, _, relative = location.partition(":")
        try:
            return resources.files(package).joinpath(relative).read_text(encoding="utf-8"), relative
        except (ModuleNotFoundError, FileNotFoundError):
            raise ModelInputError("parameter_file", f"no such parameter file: {location}") from None
    file = Path(location)
    if not file.is_file():
        raise ModelInputError("parameter_file", f"no such parameter file: {location}")
    return file.read_text(encoding="utf-8"), str(file)


def load_parameters(model: Model, location: str | None = None) -> ParameterSet:
    """Read and check the parameter file of ``model`` (default: the one it declares)."""
    where = location or model.parameter_file
    if not where:
        raise ModelInputError("parameter_file", f"{model.name} declares no parameter file")
    text, origin = read_text(where)
    if origin.endswith(".toml"):
        names, columns, units, source = _toml(text, origin)
    else:
        try:
            table = parse_parameter_csv(text, origin=origin)
        except PhysiologyInputError as exc:
            raise ModelInputError(f"{origin}: {exc.field}", exc.message) from None
        names, units, source = table.names, table.units, table.source
        columns = {c: table.values[:, j] for j, c in enumerate(table.columns)}
    if not source.strip():
        raise ModelInputError(f"{origin}: source", "a parameter file needs its citation")
    values = np.empty((len(names), len(model.parameters)))
    for j, spec in enumerate(model.parameters):
        if spec.name not in columns and np.isfinite(spec.default):
            values[:, j] = spec.default  # a structural default the model declares (e.g. F = 1, tlag = 0)
            continue
        if spec.name not in columns:
            raise ModelInputError(f"{origin}: {spec.name}", f"column missing (unit {spec.unit})")
        if units[spec.name] != spec.unit:
            raise ModelInputError(f"{origin}: {spec.name}",
                                  f"unit {units[spec.name]!r}, {model.name} declares {spec.unit!r}")
        values[:, j] = columns[spec.name]
    return ParameterSet(model.name, origin, tuple(names), values, {p.name: p.unit for p in model.parameters},
                        source.strip())


def _toml(text: str, origin: str) -> tuple[tuple[str, ...], dict[str, Array], dict[str, str], str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelInputError(origin, f"not TOML: {exc}") from None
    table = data.get("parameters")
    if not isinstance(table, dict):
        raise ModelInputError(f"{origin}: parameters", "needs a [parameters] table")
    source = str(data.get("source") or _first_source(data))
    columns: dict[str, Array] = {}
    units: dict[str, str] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or "value" not in entry or "unit" not in entry:
            raise ModelInputError(f"{origin}: parameters.{name}", "needs value and unit")
        if not str(entry.get("source", "")).strip():
            raise ModelInputError(f"{origin}: parameters.{name}", "needs a source")
        columns[name] = np.array([float(entry["value"])])
        units[name] = str(entry["unit"])
    return ("typical",), columns, units, source


def _first_source(data: dict[str, Any]) -> str:
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("source"), str):
            return str(value["source"])
    return ""
