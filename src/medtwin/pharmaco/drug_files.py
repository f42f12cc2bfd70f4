"""The checks a drug file passes before it becomes a drug: every entry present, each parameter with its unit
(the PK symbols' units are :data:`medtwin.pharmaco.pk.PARAMETER_INFO`'s) and its citation, every section
that states numbers with its source.

A failed check raises :class:`DrugFileError` naming the file and the entry, so the library
(:func:`medtwin.pharmaco.library.load_library`) can leave that one file out, say why, and load the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from medtwin.errors import InputError
from medtwin.pharmaco.dosing import Route
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pd import WARFARIN_PD_NAMES
from medtwin.pharmaco.pk import PARAMETER_INFO, CompartmentModel
from medtwin.pharmaco.units import parse_amount_mg

SECTIONS = ("drug", "pk", "parameters", "bsv", "residual", "targets")
#: entries of ``[drug]`` that must be non-empty text
DRUG_TEXT = ("name", "model", "description", "source", "default_route", "default_dose")
#: sections whose numbers need a ``source`` (each parameter and each covariate effect cites its own)
CITED = ("bsv", "residual", "targets")
#: the unit each INR-model parameter (:func:`medtwin.pharmaco.pd.warfarin_inr_rate`) is computed in: EC50 in
#: the concentration unit, the mean transit times in h, the rest dimensionless
INR_MODEL_UNITS: dict[str, str] = dict(zip(WARFARIN_PD_NAMES, ("mg/L", "1", "h", "h", "1", "1", "1"), strict=True))
#: the entries each item of a list section must give, and the entry an item is named by (else its index)
REQUIRED: dict[str, tuple[tuple[str, ...], str]] = {
    "covariates": (("parameter", "covariate", "form", "source"), ""),
    "genotype": (("gene", "parameter", "by", "source"), "gene"),
    "population_genotypes": (("covariate", "population", "alleles", "source"), "covariate")}
RESIDUAL = ("output", "additive_sd", "proportional", "source")
#: the target range and the adverse threshold every what-if answer is scored against (numbers in the file's unit)
TARGET_NUMBERS = ("target_low", "target_high", "adverse_threshold")
#: PK symbols with a default when the file leaves them out (bioavailability 1, no lag)
OPTIONAL_PK = ("F", "tlag")


class DrugFileError(PharmacoInputError):
    """A drug file that cannot be used: ``file``, the ``entry`` in it (``parameters.CL.unit``) and why.
    ``field`` is ``"<file>: <entry>"``."""

    def __init__(self, file: str, entry: str, message: str) -> None:
        super().__init__(f"{file}: {entry}", message)
        self.file = file
        self.entry = entry


@contextmanager
def entries_of(file: str, where: str) -> Iterator[None]:
    """Inside, a missing key, a value of the wrong type or a pharmaco input error becomes a
    :class:`DrugFileError` naming ``file`` and the entry under ``where``."""
    try:
        yield
    except DrugFileError:
        raise
    except KeyError as exc:
        raise DrugFileError(file, f"{where}.{exc.args[0]}" if where else str(exc.args[0]),
                            "missing entry in drug file") from exc
    except InputError as exc:
        raise DrugFileError(file, f"{where}.{exc.field}" if where else exc.field, exc.message) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise DrugFileError(file, where or "file", str(exc)) from exc


def check_drug_file(data: Mapping[str, Any], file: str) -> None:
    """Every check of a parsed drug file (see the module docstring); the first failure raises."""
    for section in SECTIONS:
        if not isinstance(data.get(section), dict):
            raise DrugFileError(file, section, "missing section (a [table])")
    _check_drug(data["drug"], file)
    with entries_of(file, "pk"):
        pk = data["pk"]
        structure = CompartmentModel(compartments=int(pk["compartments"]), absorption=bool(pk["absorption"]))
    parameters = data["parameters"]
    for name in structure.parameter_names:
        if name not in parameters and name not in OPTIONAL_PK:
            raise DrugFileError(file, f"parameters.{name}", f"missing PK parameter ({PARAMETER_INFO[name][1]})")
    present_pd = [k for k in WARFARIN_PD_NAMES if k in parameters]
    for name in WARFARIN_PD_NAMES if present_pd else ():
        if name not in parameters:
            raise DrugFileError(file, f"parameters.{name}", "missing INR-model parameter (the file gives "
                                                          f"{', '.join(present_pd)})")
    for name, entry in parameters.items():
        _check_parameter(name, entry, file)
    for section in CITED:
        _cited(data[section], file, section)
    _required(data["residual"], RESIDUAL, file, "residual")  # a table: checked with the sections
    _check_targets(data["targets"], file)
    for section, (keys, label) in REQUIRED.items():
        items = data.get(section, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise DrugFileError(file, section, "give a list of tables ([[...]])")
        for i, item in enumerate(items):
            _required(item, keys, file, f"{section}[{item.get(label, '?') if label else i}]")
    for i, effect in enumerate(data.get("covariates", [])):
        if effect["parameter"] not in parameters:
            raise DrugFileError(file, f"covariates[{i}].parameter", f"{effect['parameter']!r} is not a parameter")
    _check_bsv(data["bsv"], parameters, file)


def _check_targets(targets: Mapping[str, Any], file: str) -> None:
    _required(targets, ("adverse_name",), file, "targets")
    for key in TARGET_NUMBERS:
        value = targets.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise DrugFileError(file, f"targets.{key}", f"{value!r} is not a finite number")
    if not targets["target_low"] < targets["target_high"]:
        raise DrugFileError(file, "targets.target_high", "must be above target_low")


def _required(entry: Mapping[str, Any], keys: tuple[str, ...], file: str, where: str) -> None:
    for key in keys:
        if entry.get(key) in (None, ""):
            message = "missing citation: every number needs its source" if key == "source" else "missing entry"
            raise DrugFileError(file, f"{where}.{key}", message)


def _check_drug(drug: Mapping[str, Any], file: str) -> None:
    for key in DRUG_TEXT:
        if not isinstance(drug.get(key), str) or not drug[key].strip():
            raise DrugFileError(file, f"drug.{key}", "missing citation: every number needs its source"
                                if key == "source" else "missing or empty")
    stem = file.removesuffix(".toml")
    if file.endswith(".toml") and drug["name"].strip().lower() != stem:
        raise DrugFileError(file, "drug.name", f"{drug['name']!r} is not the file's name {stem!r}")
    routes = [r.value for r in Route]
    if drug["default_route"] not in routes:
        raise DrugFileError(file, "drug.default_route", f"{drug['default_route']!r} is not one of {routes}")
    with entries_of(file, "drug"):
        parse_amount_mg(drug["default_dose"], field="default_dose")
        interval = float(drug["default_interval_h"])
    if not 0 < interval < math.inf:
        raise DrugFileError(file, "drug.default_interval_h", "must be a number of hours > 0")


def _check_parameter(name: str, entry: Any, file: str) -> None:
    where = f"parameters.{name}"
    if not isinstance(entry, dict):
        raise DrugFileError(file, where, "give { value, unit, note, source }")
    value = entry.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DrugFileError(file, f"{where}.value", f"{value!r} is not a finite number")
    unit = entry.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        raise DrugFileError(file, f"{where}.unit", "missing: every parameter states its unit")
    expected = declared_unit(name)
    if expected is not None and unit != expected:
        raise DrugFileError(file, f"{where}.unit", f"{unit!r}, but {name} is in {expected!r}")
    if name in PARAMETER_INFO and (value < 0 or (value == 0 and name != "tlag")):
        bound = ">= 0" if name == "tlag" else "> 0"
        raise DrugFileError(file, f"{where}.value", f"{value!r}: {name} must be {bound}")
    _cited(entry, file, where)


def declared_unit(name: str) -> str | None:
    """The unit the models compute parameter ``name`` in (a PK symbol or an INR-model parameter), else None."""
    return PARAMETER_INFO[name][0] if name in PARAMETER_INFO else INR_MODEL_UNITS.get(name)


def _cited(entry: Any, file: str, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or not entry["source"].strip():
        raise DrugFileError(file, f"{where}.source", "missing citation: every number needs its source")


def _check_bsv(bsv: Mapping[str, Any], parameters: Mapping[str, Any], file: str) -> None:
    names, variances = bsv.get("names"), bsv.get("variances")
    if not isinstance(names, list) or not isinstance(variances, list) or len(names) != len(variances):
        raise DrugFileError(file, "bsv.variances", "give names and variances, one variance per name")
    for name, variance in zip(names, variances, strict=True):
        if name not in parameters:
            raise DrugFileError(file, "bsv.names", f"{name!r} is not a parameter")
        if isinstance(variance, bool) or not isinstance(variance, int | float) or not 0 <= variance < math.inf:
            raise DrugFileError(file, "bsv.variances", f"{variance!r} for {name} is not a variance >= 0")
