"""Drug twins as twin kinds: one kind per drug file of the library (entry point ``drugs``).

Each kind is the drug's model (:func:`medtwin.pharmaco.pk_model.drug_model`: compartmental PK, plus the
INR response for warfarin) at its typical values; personalisation fits the parameters with between-subject
variability from the output the drug file states its residual error on (concentration, or INR), with that
error (when that output is not modelled: concentrations with an assumed 10 % proportional error, said so in
``noise_source``). A drug file added to ``pharmaco/data/drugs/`` becomes a kind without an edit here.

Each file is loaded, checked and made a kind on its own: a broken one is left out (logged; ``medtwin drug
check`` lists it with the entry and the reason) and the other drugs stay kinds. Why: the entry point is one
callable, and the registry drops a plug-in whose callable fails, so one bad file used to hide every drug.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medtwin.errors import InputError
from medtwin.model.kinds import Chart, Control, PagePanel, Panel, PanelSeries, Personalisation, TwinKind
from medtwin.model.spec import Model
from medtwin.pharmaco.dosing import Route
from medtwin.pharmaco.library import DrugModel, LeftOut, load_library
from medtwin.pharmaco.pk_model import drug_model
from medtwin.pharmaco.units import parse_amount_mg

log = logging.getLogger("medtwin.pharmaco")
ASSUMED_PROPORTIONAL = 0.10
EXAMPLE_DOSES = 4


def _personalisation(drug: DrugModel, model: Model) -> Personalisation:
    fitted = tuple(k for k in drug.bsv.names if k in model.parameter_names)
    if drug.residual_output in model.output_names:
        return Personalisation(fitted, drug.residual_output, drug.residual.additive_sd,
                               drug.residual.proportional, noise_source=f"{drug.name} drug file [residual]")
    return Personalisation(fitted, "concentration", 0.0, ASSUMED_PROPORTIONAL,
                           noise_source=f"assumed {ASSUMED_PROPORTIONAL:.0%} proportional: the drug file gives "
                                        f"its residual error on {drug.residual_output}")


def _example(drug: DrugModel) -> dict[str, Any]:
    """The drug's default regimen, four doses, observed hourly to one interval after the last."""
    tau = drug.default_interval_h
    dose_mg = _mg(drug.default_dose) * drug.dose_fraction  # the modelled fraction (e.g. S-warfarin)
    stop = tau * (EXAMPLE_DOSES + 1)
    scenario: dict[str, Any] = {"t_eval": {"start": 0.0, "stop": stop, "step": min(1.0, tau / 4)}}
    if drug.default_route is Route.IV_INFUSION:
        duration = drug.default_infusion_duration_h
        rate = dose_mg / duration
        scenario["inputs"] = {"infusion_rate": [pair for i in range(EXAMPLE_DOSES)
                                                for pair in ([i * tau, rate], [i * tau + duration, 0.0])]}
    else:
        scenario["doses"] = [{"route": drug.default_route.value, "time": i * tau, "amount": dose_mg}
                             for i in range(EXAMPLE_DOSES)]
    return scenario


def _mg(text: str) -> float:
    return parse_amount_mg(text, field="default_dose")


def drug_kind(drug: DrugModel) -> TwinKind:
    """The twin kind of one drug of the library."""
    model = drug_model(drug)
    controls = [Control("infusion_rate", "input", "mg/h", 0.0, 1e4, 0.0, "Infusion rate")]
    controls += [Control(route, "dose", "mg", 0.0, 1e5, _mg(drug.default_dose), route.replace("_", " "))
                 for route in model.dose_names]
    return TwinKind(
        name=f"drug-{drug.name}",
        title=f"{drug.name.capitalize()} ({drug.model_name})",
        model_factory=lambda: model,
        base_parameters=lambda m: m.defaults(),  # the drug file's values (checked by drug_files on loading)
        personalisation=_personalisation(drug, model),
        forecasts=model.output_names,
        panel=Panel(drug.name.capitalize(), tuple(Chart(o.name, o.unit, drug.concentration_name if
                                                        o.name == "concentration" else o.description)
                                                  for o in model.outputs), tuple(controls)),
        example_scenario=_example(drug),
        description=drug.description,
        page_panel=_page_panel(drug),
    )


INR_LOINC = "6301-6"  # INR in platelet-poor plasma by coagulation assay (LOINC)


def _page_panel(drug: DrugModel) -> PagePanel | None:
    """The patient page's panel of a drug monitored by INR (warfarin): the INR trend with the drug file's
    target range and the drug's doses, for a patient taking it."""
    t = drug.targets
    if str(t.get("response", "")).upper() != "INR":
        return None
    return PagePanel(key="anticoagulation", title=f"Anticoagulation ({drug.name}): INR", order=30,
                     series=(PanelSeries("record", INR_LOINC, "INR"),), medications=(drug.name.lower(),),
                     target=(float(t["target_low"]), float(t["target_high"])),
                     target_label=f"target INR {t['target_low']:g}\u2013{t['target_high']:g}",
                     doses=(drug.name.lower(),))


def checked_drug_kinds(folder: Path | None = None) -> tuple[list[TwinKind], list[LeftOut]]:
    """One kind per drug file that loads, and every file left out with the reason: by the library's checks
    (:func:`medtwin.pharmaco.library.load_library`), or because its model or kind could not be built.
    Each left-out file is logged; the others still become kinds."""
    library = load_library(folder)
    built: list[TwinKind] = []
    left_out = list(library.left_out)
    for name, drug in library.drugs.items():
        try:
            built.append(drug_kind(drug))
        except InputError as exc:
            left_out.append(LeftOut(f"{name}.toml", exc.field, exc.message))
            log.error("drug file left out: %s", left_out[-1])
    return built, left_out


def drug_kinds(folder: Path | None = None) -> list[TwinKind]:
    """One kind per drug file that loads (the ``medtwin.twin_kinds`` entry point ``drugs``); a broken file is
    left out alone (:func:`checked_drug_kinds` says why), so it cannot take the other drugs' kinds with it."""
    return checked_drug_kinds(folder)[0]
