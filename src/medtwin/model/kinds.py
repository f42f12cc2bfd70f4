"""Twin kinds as plug-ins: what a kind of twin is made of, and the registry that finds them.

A :class:`TwinKind` names its model (:class:`medtwin.model.spec.Model`), its base parameter row, the record
data (LOINC codes) and device metrics (vocabulary names, :mod:`medtwin.vocab`) it consumes, how it
personalises (which parameters are fitted from which output), what it forecasts, which alert rules it
contributes (rule names of :mod:`medtwin.alerts.registry`) and the descriptor the dashboard lays its panel
out from. The API (``/twin-kinds``, ``/patients/{id}/twins/{kind}/...``) and the CLI (``medtwin twin ...``)
serve every registered kind through the generic path (:mod:`medtwin.model`), so a new kind needs no edit
anywhere else.

Kinds come from the ``medtwin.twin_kinds`` entry-point group (a package adds one in its ``pyproject.toml``:
``[project.entry-points."medtwin.twin_kinds"] heart = "mypkg.heart:KIND"``; the object is a
:class:`TwinKind`, or a callable returning one or an iterable of them) and from :func:`register`
(programmatic, e.g. a test). A plug-in that fails to load is logged and listed by :func:`load_errors`; it
does not take the others down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Final

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.spec import Model

GROUP: Final = "medtwin.twin_kinds"
log = logging.getLogger("medtwin.twin")


class UnknownTwinKindError(ModelInputError):
    """No twin kind of that name is registered."""


@dataclass(frozen=True)
class Chart:
    output: str
    unit: str
    label: str


@dataclass(frozen=True)
class Control:
    """A what-if control: an input rate, a dose route or a parameter, with its unit and allowed range."""

    name: str
    target: str  # "input" | "dose" | "parameter"
    unit: str
    minimum: float
    maximum: float
    default: float
    label: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    charts: tuple[Chart, ...]
    controls: tuple[Control, ...] = ()


@dataclass(frozen=True)
class PanelSeries:
    """One line of a patient-page panel: a device metric (vocabulary name) or a record observation (LOINC)."""

    source: str  # "device" | "record"
    name: str  # the metric name or the LOINC code
    label: str


@dataclass(frozen=True)
class PagePanel:
    """A panel of the problem-oriented patient page (issue #15 item 9): which problems, medications or data
    select it, what it draws, and what else it shows. Chosen by :func:`medtwin.model.panels.choose_panels`;
    a chosen panel without data is hidden.

    ``conditions``: SNOMED CT codes of active problems; ``medications``: RxNorm codes or lower-case words of
    the medication's name ("warfarin"); ``data``: device metrics or LOINC codes whose data alone select it;
    ``target``: a range drawn on the first series (``target_label`` says whose); ``doses``: medication words
    whose dosage instructions the panel lists; ``score``: a score whose trend the panel draws ("news2")."""

    key: str
    title: str
    order: int
    series: tuple[PanelSeries, ...]
    conditions: tuple[str, ...] = ()
    medications: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    target: tuple[float, float] | None = None
    target_label: str = ""
    doses: tuple[str, ...] = ()
    score: str | None = None
    events: tuple[str, ...] = ()  # device metrics marked on the first series' chart (boluses, carbohydrate)

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "order": self.order,
                "series": [vars(s) for s in self.series], "conditions": list(self.conditions),
                "medications": list(self.medications), "data": list(self.data),
                "target": list(self.target) if self.target else None, "target_label": self.target_label,
                "doses": list(self.doses), "score": self.score, "events": list(self.events)}


@dataclass(frozen=True)
class Personalisation:
    """Which parameters are fitted from which observed output; the observation error has SD
    ``sqrt(noise_sd^2 + (proportional * value)^2)`` (``noise_sd`` in the output's unit), from ``noise_source``."""

    fitted: tuple[str, ...]
    observed_output: str
    noise_sd: float
    proportional: float = 0.0
    noise_source: str = ""
    prior_sd_log: Mapping[str, float] = field(default_factory=dict)
    observed_loinc: tuple[str, ...] = ()


@dataclass(frozen=True)
class TwinKind:
    name: str
    title: str
    model_factory: Callable[[], Model]
    base_parameters: Callable[[Model], Array]  # (1, P) the kind's typical patient
    personalisation: Personalisation
    forecasts: tuple[str, ...]
    panel: Panel
    example_scenario: Mapping[str, Any]  # a JSON timeline inside the documented input range
    consumes_loinc: tuple[str, ...] = ()
    device_metrics: tuple[str, ...] = ()
    alert_rules: tuple[str, ...] = ()
    description: str = ""
    drift_sd_log: float = 0.01  # per square-root model time unit, for the ensemble filter
    page_panel: PagePanel | None = None  # its panel on the problem-oriented patient page, if it has one

    @cached_property
    def model(self) -> Model:
        return self.model_factory()

    def base(self) -> Array:
        return self.model.check_parameters(self.base_parameters(self.model))[:1]

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what ``GET /twin-kinds`` returns and the dashboard lays the panel out from."""
        p = self.personalisation
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "model": self.model.describe(),
            "consumes": {"loinc": list(self.consumes_loinc), "device_metrics": list(self.device_metrics)},
            "personalisation": {"fitted": list(p.fitted), "observed_output": p.observed_output,
                                "noise_sd": p.noise_sd, "proportional": p.proportional,
                                "noise_source": p.noise_source, "observed_loinc": list(p.observed_loinc)},
            "forecasts": list(self.forecasts),
            "alert_rules": list(self.alert_rules),
            "panel": {"title": self.panel.title,
                      "charts": [vars(c) for c in self.panel.charts],
                      "controls": [vars(c) for c in self.panel.controls]},
            "example_scenario": dict(self.example_scenario),
            "page_panel": self.page_panel.describe() if self.page_panel else None,
        }


_lock = threading.Lock()
_registered: dict[str, TwinKind] = {}
_from_entry_points: dict[str, TwinKind] = {}
_errors: dict[str, str] = {}
_loaded = False


def register(kind: TwinKind, *, replace: bool = False) -> TwinKind:
    """Add a kind (a test, an application); a name already registered needs ``replace=True``."""
    if not isinstance(kind, TwinKind):
        raise ModelInputError("kind", f"not a TwinKind: {kind!r}")
    with _lock:
        if not replace and (kind.name in _registered or kind.name in _from_entry_points):
            raise ModelInputError("kind", f"twin kind {kind.name!r} is already registered")
        _registered[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def _load_entry_points() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for point in entry_points(group=GROUP):
            try:
                for kind in _expand(point.load()):
                    _from_entry_points[kind.name] = kind
            except Exception as exc:  # a broken plug-in is reported, the others still load
                _errors[point.name] = f"{type(exc).__name__}: {exc}"
                log.error("twin kind plug-in %s failed to load: %s", point.name, exc)
        _loaded = True


def _expand(obj: Any) -> Iterable[TwinKind]:
    if isinstance(obj, TwinKind):
        return [obj]
    if callable(obj):
        obj = obj()
    if isinstance(obj, TwinKind):
        return [obj]
    kinds = list(obj)
    if not all(isinstance(k, TwinKind) for k in kinds):
        raise TypeError("an entry point must give a TwinKind or an iterable of them")
    return kinds


def kinds() -> dict[str, TwinKind]:
    """Every registered kind by name (entry points, then programmatic registrations), sorted by name."""
    _load_entry_points()
    merged = {**_from_entry_points, **_registered}
    return {name: merged[name] for name in sorted(merged)}


def get(name: str) -> TwinKind:
    found = kinds().get(name)
    if found is None:
        raise UnknownTwinKindError("kind", f"unknown twin kind {name!r}; known: {', '.join(kinds()) or 'none'}")
    return found


def load_errors() -> dict[str, str]:
    """Entry points that failed to load, with the reason."""
    _load_entry_points()
    return dict(_errors)
