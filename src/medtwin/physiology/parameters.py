"""Parameter sets as data files: CSV with units in the column names (``"Vg [dL/kg]"``) and a cited source.

Comment lines starting with ``#`` at the top hold the citation. Identifier columns (``name``,
``age_group``) carry no unit; every other column must be ``"<name> [<unit>]"`` (``[1]`` for
dimensionless) with a finite numeric value in every row.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.physiology.errors import PhysiologyInputError, UnknownPatientError

_COLUMN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[([^\]]+)\]\s*$")
IDENTIFIER_COLUMNS = ("name", "age_group")
#: Quantities that are volumes, masses or rates that must be strictly positive.
POSITIVE_COLUMNS = ("BW", "Vg", "Vi", "CR", "CF", "TDI")
REGISTERED_SETS = {"uva_padova_2008": "uva_padova_2008_patients.csv"}


@dataclass(frozen=True)
class ParameterTable:
    """A table of patients x quantities read from a parameter file."""

    names: tuple[str, ...]
    groups: tuple[str, ...]
    columns: tuple[str, ...]
    units: dict[str, str]
    values: Array  # (n_patients, n_columns)
    source: str

    def column(self, name: str) -> Array:
        if name not in self.columns:
            raise PhysiologyInputError(name, "not a column of this parameter set")
        return self.values[:, self.columns.index(name)]

    def rows(self, names: list[str] | tuple[str, ...]) -> ParameterTable:
        """Subset by patient name; raises :class:`UnknownPatientError` naming the unknown patient."""
        index = []
        for name in names:
            if name not in self.names:
                raise UnknownPatientError(
                    "patient", f"unknown virtual patient {name!r}; known: {', '.join(self.names[:3])}, ..."
                )
            index.append(self.names.index(name))
        return ParameterTable(
            names=tuple(self.names[i] for i in index),
            groups=tuple(self.groups[i] for i in index),
            columns=self.columns,
            units=self.units,
            values=self.values[index],
            source=self.source,
        )


def parse_parameter_csv(text: str, origin: str = "<text>") -> ParameterTable:
    """Parse and validate a parameter CSV; errors name the column (and row) at fault."""
    lines = text.splitlines()
    comments = [line[1:].strip() for line in lines if line.startswith("#")]
    body = "\n".join(line for line in lines if not line.startswith("#") and line.strip())
    reader = csv.reader(io.StringIO(body))
    try:
        header = next(reader)
    except StopIteration:
        raise PhysiologyInputError("header", f"{origin} has no header row") from None
    columns: list[str] = []
    units: dict[str, str] = {}
    id_positions: dict[str, int] = {}
    for position, raw in enumerate(header):
        key = raw.strip()
        if key in IDENTIFIER_COLUMNS:
            id_positions[key] = position
            continue
        match = _COLUMN.match(key)
        if match is None:
            raise PhysiologyInputError(
                key or f"column {position}", "missing unit: expected '<name> [<unit>]'"
            )
        name, unit = match.group(1), match.group(2).strip()
        if name in units:
            raise PhysiologyInputError(name, "duplicate column")
        columns.append(name)
        units[name] = unit
    if "name" not in id_positions:
        raise PhysiologyInputError("name", "parameter file needs a 'name' column")
    names, groups, values = _read_rows(reader, header, columns, id_positions)
    if not names:
        raise PhysiologyInputError("rows", f"{origin} has no patients")
    return ParameterTable(
        names=tuple(names),
        groups=tuple(groups),
        columns=tuple(columns),
        units=units,
        values=np.asarray(values, dtype=float),
        source="\n".join(comments),
    )


def _read_rows(
    reader: Any, header: list[str], columns: list[str], id_positions: dict[str, int]
) -> tuple[list[str], list[str], list[list[float]]]:
    """The patient rows: name, age group and one checked number per unit column."""
    names: list[str] = []
    groups: list[str] = []
    values: list[list[float]] = []
    numeric_positions = [i for i in range(len(header)) if i not in id_positions.values()]
    for row_number, row in enumerate(reader, start=1):
        if len(row) != len(header):
            raise PhysiologyInputError(
                f"row {row_number}", f"has {len(row)} fields, header has {len(header)}"
            )
        patient = row[id_positions["name"]].strip()
        if not patient or patient in names:
            raise PhysiologyInputError(
                "name", f"row {row_number}: empty or duplicate patient name {patient!r}"
            )
        values.append([
            _cell(column, row[position], row_number, patient)
            for column, position in zip(columns, numeric_positions, strict=True)
        ])
        names.append(patient)
        groups.append(row[id_positions["age_group"]].strip() if "age_group" in id_positions else "")
    return names, groups, values


def _cell(column: str, text: str, row_number: int, patient: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PhysiologyInputError(column, f"row {row_number} ({patient}): not a number: {text!r}") from None
    if not np.isfinite(value):
        raise PhysiologyInputError(column, f"row {row_number} ({patient}): not finite")
    if column in POSITIVE_COLUMNS and value <= 0:
        raise PhysiologyInputError(column, f"row {row_number} ({patient}): must be positive, got {value}")
    if value < 0 and not column.startswith("x0_"):
        raise PhysiologyInputError(column, f"row {row_number} ({patient}): must not be negative, got {value}")
    return value


def load_parameter_file(path: str | Path) -> ParameterTable:
    """Read a parameter CSV from disk."""
    file = Path(path)
    if not file.is_file():
        raise PhysiologyInputError("parameter_file", f"no such file: {file}")
    return parse_parameter_csv(file.read_text(encoding="utf-8"), origin=str(file))


def load_parameter_set(name: str = "uva_padova_2008") -> ParameterTable:
    """Load a registered, shipped parameter set by name."""
    if name not in REGISTERED_SETS:
        raise UnknownPatientError(
            "parameter_set", f"unknown parameter set {name!r}; known: {sorted(REGISTERED_SETS)}"
        )
    text = (
        resources.files("medtwin.physiology")
        .joinpath("data", REGISTERED_SETS[name])
        .read_text(encoding="utf-8")
    )
    return parse_parameter_csv(text, origin=name)
