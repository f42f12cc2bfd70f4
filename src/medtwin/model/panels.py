"""The problem-oriented patient page: which panels a patient gets, from their problems, medications and data
(issue #15 item 9). The one place these rules live: the API serves the choice, the dashboard and the report
draw what it says.

A panel is a :class:`medtwin.model.kinds.PagePanel`. A twin kind brings its own (``TwinKind.page_panel``:
the glucose kind's CGM panel, the warfarin kind's INR panel); panels of problems no twin kind models yet are
declared here (:data:`PANELS`: the NEWS2 vital-signs flowsheet, chronic kidney disease). A panel is chosen
when an active problem (SNOMED CT code), an active medication (RxNorm code or a word of its name) or data of
its own (``data``) call for it, and shown only when one of its series has data; chosen panels come in
``order`` (CGM first for diabetes). A panel may also calculate a series from others (:data:`DERIVED`: eGFR from
creatinine by CKD-EPI 2021 for each creatinine reading without a same-day reported eGFR); such a series is never
a measurement and says how it was calculated.

A quantity recorded under several codes and units (creatinine: LOINC 2160-0 in mg/dL, 14682-9 in umol/L) is
one chart, not one per code (:data:`QUANTITIES`): why: two charts of one quantity, each captioned "latest" for
its own code, contradicted the tile (the newest over all codes). Each :class:`Quantity` says which codes it
gathers, its default unit and how its units convert (the domain's factor, ``medtwin.vocab.renal``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from medtwin.model.kinds import PagePanel, PanelSeries, kinds
from medtwin.vocab.display import short_name
from medtwin.vocab.metrics import (
    BODY_TEMPERATURE,
    CONSCIOUSNESS,
    DIASTOLIC_BP,
    HEART_RATE,
    RESPIRATORY_RATE,
    SPO2,
    SUPPLEMENTAL_OXYGEN,
    SYSTOLIC_BP,
)
from medtwin.vocab.renal import CREATININE_LOINC, EGFR_LABEL, EGFR_LOINC, EGFR_UNIT, creatinine_mg_dl

__all__ = ["DERIVED", "PANELS", "QUANTITIES", "ChosenPanel", "DerivedSeries", "PatientFacts", "Quantity",
           "choose_panels", "page_panels", "quantity_table"]

#: SNOMED CT codes (International edition) of problems with a risk of acute deterioration, where the vital
#: signs every NEWS2 parameter needs come first: atrial fibrillation, heart failure, COPD, pneumonia, sepsis.
DETERIORATION_PROBLEMS = ("49436004", "84114007", "13645005", "233604007", "91302008")
#: chronic kidney disease (any stage, SNOMED CT): 709044004 CKD, 431855005-431857002 stages 1-4, 433144002
#: stage 3, 433146000 stage 5
CKD_PROBLEMS = ("709044004", "431855005", "431856006", "431857002", "433144002", "433146000")
#: LOINC: potassium in serum or plasma (2823-3), in blood (6298-4): the kidney panel shows it because CKD and
#: the drugs it is treated with (ACE inhibitors, ARBs, MRAs) raise it
POTASSIUM_LOINC = ("2823-3", "6298-4")

PANELS: tuple[PagePanel, ...] = (
    PagePanel(
        key="vitals", title="Vital signs (NEWS2 flowsheet)", order=20,
        series=(PanelSeries("device", RESPIRATORY_RATE, "Respiration rate"), PanelSeries("device", SPO2, "SpO\u2082"),
                PanelSeries("device", SUPPLEMENTAL_OXYGEN, "Air or oxygen"),
                PanelSeries("device", SYSTOLIC_BP, "Systolic blood pressure"),
                PanelSeries("device", DIASTOLIC_BP, "Diastolic blood pressure"),
                PanelSeries("device", HEART_RATE, "Heart rate"),
                PanelSeries("device", CONSCIOUSNESS, "Consciousness (ACVPU)"),
                PanelSeries("device", BODY_TEMPERATURE, "Body temperature")),
        conditions=DETERIORATION_PROBLEMS,
        data=(RESPIRATORY_RATE, SPO2, HEART_RATE, SYSTOLIC_BP, BODY_TEMPERATURE),
        score="news2"),
    PagePanel(
        key="kidney", title="Kidney function: eGFR, creatinine, potassium", order=40,
        series=(*(PanelSeries("record", code, "eGFR") for code in EGFR_LOINC),
                *(PanelSeries("record", code, "Creatinine") for code in CREATININE_LOINC),
                *(PanelSeries("record", code, "Potassium") for code in POTASSIUM_LOINC)),
        conditions=CKD_PROBLEMS, data=EGFR_LOINC),
)


@dataclass(frozen=True)
class Quantity:
    """One quantity of a panel drawn as one chart whatever code and unit each reading was recorded under.

    ``per_unit(unit)`` is how much of ``unit`` (the default display unit, UCUM) one ``unit`` is (a ValueError for
    a unit that is not this quantity's); None: no conversion, a reading is drawn only when its unit reads as
    ``unit``. ``reference``: lines ``(value, label)`` in the default unit; with a ``reference_name`` they are
    category lower limits and the newest value's category is named (``reference_source`` its citation).
    ``axis``: the values the value axis always spans, in the default unit (None: the data's; 0 is 0 in any unit),
    so a small change is not drawn as a steep fall."""

    key: str
    label: str
    codes: tuple[str, ...]
    unit: str
    per_unit: Callable[[str | None], float] | None = None
    reference: tuple[tuple[float, str], ...] = ()
    reference_name: str = ""
    reference_source: str = ""
    axis: tuple[float, float] | None = (0.0, 0.0)


#: KDIGO 2012 GFR categories (mL/min/1.73 m2), each drawn at its lower limit: G1 >= 90, G2 60-89, G3a 45-59,
#: G3b 30-44, G4 15-29, G5 < 15 (KDIGO 2012 Clinical Practice Guideline for the Evaluation and Management of
#: CKD, Kidney Int Suppl 2013;3:1-150)
GFR_CATEGORIES = ((90.0, "G1"), (60.0, "G2"), (45.0, "G3a"), (30.0, "G3b"), (15.0, "G4"), (0.0, "G5"))
GFR_CATEGORIES_SOURCE = ("KDIGO 2012 GFR categories (G1 >= 90, G2 60-89, G3a 45-59, G3b 30-44, G4 15-29, G5 < 15 "
                         "mL/min/1.73 m2); Kidney Int Suppl 2013;3:1-150")

#: serum potassium (mmol/L): hyperkalaemia from 5.5 (UK Kidney Association, Clinical Practice Guidelines:
#: Treatment of Acute Hyperkalaemia in Adults, 2020), hypokalaemia below 3.5: lines, not categories
POTASSIUM_LIMITS = ((5.5, "5.5"), (3.5, "3.5"))


def potassium_mmol_l(unit: str | None) -> float:
    """mmol/L in one ``unit`` of potassium: mmol/L, or mEq/L (the same for a monovalent ion); else ValueError."""
    if unit in ("mmol/L", "meq/L", "mEq/L", "m[eq]/L"):
        return 1.0
    raise ValueError(f"potassium unit {unit!r}: not mmol/L or mEq/L")


#: the quantities a panel (by key) draws as one chart each, in order
QUANTITIES: dict[str, tuple[Quantity, ...]] = {
    "kidney": (Quantity("egfr", "eGFR", EGFR_LOINC, EGFR_UNIT, reference=GFR_CATEGORIES, reference_name="KDIGO",
                        reference_source=GFR_CATEGORIES_SOURCE, axis=(0.0, 100.0)),
               Quantity("creatinine", "Creatinine", CREATININE_LOINC, "mg/dL", partial(creatinine_mg_dl, 1.0)),
               Quantity("potassium", "Potassium", POTASSIUM_LOINC, "mmol/L", potassium_mmol_l,
                        reference=POTASSIUM_LIMITS, axis=(3.0, 6.0))),
}


def quantity_table() -> list[dict[str, object]]:
    """Every quantity of :data:`QUANTITIES` as ``{panel, key, label, codes, unit}`` (unit: the default one), for
    clients that group readings as the panels chart them (the vocabulary serves it: the Record tab's latest labs
    show one row per quantity, not one per code)."""
    return [{"panel": panel, "key": q.key, "label": q.label, "codes": list(q.codes), "unit": q.unit}
            for panel, quantities in QUANTITIES.items() for q in quantities]


@dataclass(frozen=True)
class DerivedSeries:
    """A series a panel calculates from the record (never shown as measured): calculated from each reading of
    ``inputs`` (LOINC codes) unless the record reports the value itself (a reading of ``unless``) on the same
    day, drawn in the chart of the quantity ``into``."""

    name: str
    label: str
    inputs: tuple[str, ...]
    unless: tuple[str, ...] = ()
    into: str = ""


#: what a panel (by key) calculates: the kidney panel's eGFR from creatinine (``medtwin.vocab.renal``)
DERIVED: dict[str, tuple[DerivedSeries, ...]] = {
    "kidney": (DerivedSeries("egfr-ckd-epi-2021", f"eGFR, {EGFR_LABEL}", CREATININE_LOINC, EGFR_LOINC, "egfr"),),
}


@dataclass(frozen=True)
class PatientFacts:
    """What the choice reads: active problems ``(SNOMED CT code, display)``, active medications ``(code,
    display)`` and the names with data (device metrics with samples, LOINC codes of record observations)."""

    problems: Sequence[tuple[str, str]]
    medications: Sequence[tuple[str, str]]
    present: frozenset[str]


@dataclass(frozen=True)
class ChosenPanel:
    panel: PagePanel
    reasons: tuple[str, ...]  # why: "problem: Atrial fibrillation", "medication: warfarin", "device data", "record data"
    with_data: tuple[PanelSeries, ...]  # its series that have data (none: the panel is hidden)
    derived: tuple[DerivedSeries, ...] = ()  # what it may calculate for this patient (DERIVED, inputs present)

    @property
    def shown(self) -> bool:
        return bool(self.with_data)


def page_panels() -> list[PagePanel]:
    """Every panel: the twin kinds' (``TwinKind.page_panel``) and those declared here, in page order."""
    found = [k.page_panel for k in kinds().values() if k.page_panel is not None]
    return sorted([*found, *PANELS], key=lambda p: (p.order, p.key))


def _medication_match(panel: PagePanel, code: str, display: str) -> str | None:
    """What of the medication called for the panel: its code's display, or the word found in its name."""
    words = display.lower()
    for m in panel.medications:
        if m == code:
            return display or code
        if not m.isdigit() and m in words:
            return m
    return None


def _is_loinc(name: str) -> bool:
    """A LOINC code ("2160-0") rather than a device metric name ("glucose")."""
    return "-" in name and name.replace("-", "").isdigit()


def _reasons(panel: PagePanel, facts: PatientFacts) -> tuple[str, ...]:
    out = [f"problem: {short_name(code, display)}" for code, display in facts.problems if code in panel.conditions]
    matched = (_medication_match(panel, code, display or "") for code, display in facts.medications)
    out += [f"medication: {m}" for m in matched if m]
    found = [name for name in panel.data if name in facts.present]
    if any(_is_loinc(name) for name in found):
        out.append("record data")
    if any(not _is_loinc(name) for name in found):
        out.append("device data")
    return tuple(dict.fromkeys(out))


def choose_panels(facts: PatientFacts, panels: Iterable[PagePanel] | None = None) -> list[ChosenPanel]:
    """The panels this patient's page shows (and the chosen ones hidden for lack of data), in page order."""
    out: list[ChosenPanel] = []
    for panel in panels if panels is not None else page_panels():
        reasons = _reasons(panel, facts)
        if reasons:
            derived = tuple(d for d in DERIVED.get(panel.key, ()) if facts.present.intersection(d.inputs))
            out.append(ChosenPanel(panel, reasons, tuple(s for s in panel.series if s.name in facts.present),
                                   derived))
    return out
