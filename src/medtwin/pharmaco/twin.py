"""Service-level functions for treatment on the twin, with pydantic request/result models an API can
take and return as JSON: :func:`compare_regimens` (what-if) and :func:`individualise` (MAP dose
individualisation from measured levels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from medtwin.arrays import Array
from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.dosing import DoseEvent, DoseSchedule, Regimen, Route
from medtwin.pharmaco.errors import CovariateError, PharmacoInputError
from medtwin.pharmaco.estimation import map_estimate
from medtwin.pharmaco.library import DrugModel, GenotypeAdjustment, load_drug
from medtwin.pharmaco.pd import simulate_pkpd, warfarin_inr, warfarin_inr_rate, warfarin_inr_steady_state
from medtwin.pharmaco.pk import simulate, steady_state


class Level(BaseModel):
    """A measured drug level or response (therapeutic drug monitoring)."""

    time_h: float = Field(ge=0, description="Time of the sample [h] on the dosing-history clock.")
    value: float = Field(ge=0)
    unit: str = Field(description="'mg/L' for concentrations, '1' for INR.")


class Posterior(BaseModel):
    names: list[str]
    eta: list[float]
    covariance: list[list[float]]


class CompareRequest(BaseModel):
    drug: str
    patient: PatientCovariates
    regimens: list[Regimen] = Field(min_length=1)
    horizon_h: float = Field(default=168.0, gt=0, le=24 * 120)
    n_samples: int = Field(default=500, ge=20, le=20_000)
    seed: int = 0
    history: list[DoseEvent] = Field(default_factory=list, description="Doses already given (for levels).")
    levels: list[Level] = Field(default_factory=list, description="Measured levels to personalise the twin.")


class RegimenOutcome(BaseModel):
    regimen: Regimen
    times_h: list[float]
    concentration_p05: list[float]
    concentration_p50: list[float]
    concentration_p95: list[float]
    response_name: str | None = None
    response_p05: list[float] | None = None
    response_p50: list[float] | None = None
    response_p95: list[float] | None = None
    metric_name: str
    metric_p05: float
    metric_p50: float
    metric_p95: float
    probability_target: float
    probability_adverse: float


class PopulationGenotypeUse(BaseModel):
    """A genotype covariate the patient has none for, simulated over population frequencies instead: each
    virtual subject's diplotype is drawn from ``frequencies`` (Hardy-Weinberg proportions of cited alleles)."""

    covariate: str
    population: str
    frequencies: dict[str, float] = Field(description="Diplotype -> population frequency.")
    source: str
    citation: str = Field(description="Short form of the source.")


class DrugComparison(BaseModel):
    drug: str
    model: str
    source: str
    concentration_name: str
    target: str
    adverse: str
    personalised_from_levels: bool
    outcomes: list[RegimenOutcome]
    genotype: list[GenotypeAdjustment] = Field(
        default_factory=list, description="Each pharmacogene effect of the model: applied or not, and why.")
    population_genotypes: list[PopulationGenotypeUse] = Field(
        default_factory=list, description="Genotype covariates not known for this patient, simulated over "
                                          "population frequencies (the genotype-unknown model).")


class IndividualiseRequest(BaseModel):
    drug: str
    patient: PatientCovariates
    history: list[DoseEvent] = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)
    max_adverse_probability: float = Field(default=0.1, gt=0, lt=1)
    intervals_h: list[float] | None = None
    n_samples: int = Field(default=2000, ge=100, le=50_000)
    seed: int = 0


class ParameterEstimate(BaseModel):
    name: str
    unit: str
    population: float
    individual: float
    ci90_low: float
    ci90_high: float


class DoseSuggestion(BaseModel):
    drug: str
    regimen: Regimen | None
    probability_target: float
    probability_adverse: float
    metric_name: str
    metric_p50: float
    metric_p05: float
    metric_p95: float
    parameters: list[ParameterEstimate]
    feasible: bool
    note: str
    genotype: list[GenotypeAdjustment] = Field(
        default_factory=list, description="Each pharmacogene effect of the model: applied or not, and why.")


# ---- helpers ---------------------------------------------------------------------------------------


def _schedule(drug: DrugModel, events: list[DoseEvent]) -> DoseSchedule:
    return DoseSchedule.from_events(events).scaled(drug.dose_fraction)


def _check_units(drug: DrugModel, levels: list[Level]) -> None:
    expected = "1" if drug.residual_output == "INR" else "mg/L"
    for i, level in enumerate(levels):
        if level.unit.strip() != expected:
            raise PharmacoInputError(f"levels[{i}].unit", f"{drug.name} levels must be in {expected!r}, got {level.unit!r}")


def _predict_levels(drug: DrugModel, schedule: DoseSchedule, times: Array, params: Mapping[str, Array]) -> Array:
    if drug.residual_output == "INR":
        n = params["CL"].shape[0]
        res = simulate_pkpd(drug.structure, drug.pk_parameters(params), schedule, times, warfarin_inr_rate(params),
                            np.ones((n, 7)), warfarin_inr(params))
        return res.response
    return simulate(drug.structure, drug.pk_parameters(params), schedule, times).concentration_mg_l


def _posterior(drug: DrugModel, typical: Mapping[str, Array], history: list[DoseEvent], levels: list[Level]):  # type: ignore[no-untyped-def]
    _check_units(drug, levels)
    ordered = sorted(levels, key=lambda lv: lv.time_h)
    times = np.array([lv.time_h for lv in ordered])
    if np.any(np.diff(times) <= 0):
        raise PharmacoInputError("levels", "sample times must be distinct")
    observed = np.array([[lv.value for lv in ordered]])
    schedule = _schedule(drug, history)
    return map_estimate(lambda p: _predict_levels(drug, schedule, times, p), typical, drug.bsv.names, drug.bsv.omega,
                        drug.residual, observed)


def typical_with_genotype(drug: DrugModel, patient: PatientCovariates,
                          covariates: Mapping[str, object] | None = None,
                          n: int = 1) -> tuple[dict[str, Array], list[GenotypeAdjustment]]:
    """Typical parameters of ``n`` subjects (default: the patient's covariates, one subject) with the model's
    genotype factors applied (each with its reason)."""
    typical = drug.typical_parameters(patient.as_arrays() if covariates is None else covariates, n)
    adjustments = drug.genotype_adjustments(patient.pharmacogenes)
    for adjustment in adjustments:
        if adjustment.applied:
            typical[adjustment.parameter] = typical[adjustment.parameter] * adjustment.factor
    return typical, adjustments


def unknown_genotypes(drug: DrugModel, patient: PatientCovariates) -> list[str]:
    """The model's genotype covariates this patient has no value for and the drug file gives population
    frequencies for (simulated over those frequencies by :func:`compare_regimens`)."""
    known = patient.as_arrays()
    return [c for c in drug.required_covariates if c not in known and c in drug.population_genotypes]


def _typical_population(drug: DrugModel, patient: PatientCovariates, n: int, rng: np.random.Generator,
                        levels: list[Level]) -> tuple[dict[str, Array], list[GenotypeAdjustment],
                                                      list[PopulationGenotypeUse]]:
    """Typical parameters of ``n`` virtual subjects: the patient's own (repeated), or, for a genotype the
    patient has none for, each subject's diplotype drawn from the population frequencies."""
    unknown = unknown_genotypes(drug, patient)
    if not unknown:
        typical1, adjustments = typical_with_genotype(drug, patient)
        return {k: np.repeat(v, n) for k, v in typical1.items()}, adjustments, []
    if levels:
        raise CovariateError(unknown[0], "unknown, and measured levels are fitted for one genotype: give the "
                                         "genotype to personalise from levels (without levels the what-if "
                                         "simulates over population genotype frequencies)")
    covariates = patient.as_arrays()
    used = []
    for name in unknown:
        table = drug.population_genotypes[name]
        covariates[name] = table.sample(n, rng)
        keys, freqs = table.diplotypes()
        used.append(PopulationGenotypeUse(covariate=name, population=table.population, source=table.source,
                                          citation=table.citation,
                                          frequencies={k: round(float(f), 6) for k, f in zip(keys, freqs, strict=True)}))
    typical, adjustments = typical_with_genotype(drug, patient, covariates, n)
    return typical, adjustments, used


def _sample_parameters(drug: DrugModel, typical: Mapping[str, Array], n: int, rng: np.random.Generator,
                       history: list[DoseEvent], levels: list[Level]) -> tuple[dict[str, Array], bool, object]:
    if levels:
        if not history:
            raise PharmacoInputError("history", "measured levels need the doses that produced them")
        post = _posterior(drug, {k: v[:1] for k, v in typical.items()}, history, levels)
        eta = rng.multivariate_normal(post.eta[0], post.covariance[0], size=n)
        return drug.bsv.apply(typical, eta), True, post
    return drug.bsv.apply(typical, drug.bsv.sample_eta(n, rng)), False, None


def _adverse(targets: Mapping[str, Any], metric: Array) -> Array:
    """Where an AUC or trough ``metric`` is on the adverse side of the drug file's threshold: above it, or below it
    when the risk is too little exposure (``adverse_below = true``: clopidogrel's active metabolite in poor
    metabolisers). INR and mean-concentration targets keep their above-threshold (peak) rule."""
    threshold = float(targets["adverse_threshold"])
    return np.asarray(metric < threshold if targets.get("adverse_below") else metric > threshold)


def _targets_text(drug: DrugModel) -> tuple[str, str]:
    t = drug.targets
    if drug.has_inr:
        return f"INR {t['target_low']}-{t['target_high']}", str(t["adverse_name"])
    unit = t.get("unit", "mg/L")
    return f"{t.get('metric', 'concentration')} {t['target_low']}-{t['target_high']} {unit}", str(t["adverse_name"])


# ---- what-if -----------------------------------------------------------------------------------------


def compare_regimens(request: CompareRequest, model: DrugModel | None = None) -> DrugComparison:
    """Simulate each regimen on the patient's twin (a virtual population of plausible parameter sets:
    the population prior, or the posterior given measured levels) and summarise trajectories with 90%
    prediction intervals, the probability of target attainment and of crossing the adverse threshold.
    ``model``: a parsed drug model instead of the library's ``request.drug`` (e.g. a variant for a test)."""
    drug = model or load_drug(request.drug)
    rng = np.random.default_rng(request.seed)
    typical, adjustments, mixture = _typical_population(drug, request.patient, request.n_samples, rng,
                                                        request.levels)
    params, personalised, _ = _sample_parameters(drug, typical, request.n_samples, rng, request.history,
                                                 request.levels)
    t = drug.targets
    step = 0.25 if request.horizon_h <= 24 * 14 else 1.0
    times = np.arange(0.0, request.horizon_h + 1e-9, step)
    outcomes = []
    for index, regimen in enumerate(request.regimens):
        if regimen.route is Route.ORAL and not drug.structure.absorption:
            raise PharmacoInputError(f"regimens[{index}].route", f"{drug.name} model has no oral absorption")
        if regimen.route is not Route.ORAL and drug.structure.absorption and drug.name == "warfarin":
            raise PharmacoInputError(f"regimens[{index}].route", "the warfarin model is oral only")
        schedule = regimen.schedule().scaled(drug.dose_fraction)
        response = None
        if drug.has_inr:
            res = simulate_pkpd(drug.structure, drug.pk_parameters(params), schedule, times, warfarin_inr_rate(params),
                                np.ones((request.n_samples, 7)), warfarin_inr(params))
            conc, response = res.concentration_mg_l, res.response
            final = response[:, -1]
            metric_name, metric = "INR at end of horizon", final
            p_target = np.mean((final >= t["target_low"]) & (final <= t["target_high"]))
            p_adverse = np.mean(response.max(axis=1) > t["adverse_threshold"])
        else:
            conc = simulate(drug.structure, drug.pk_parameters(params), schedule, times).concentration_mg_l
            last = times >= times[-1] - 24.0
            if t.get("metric") in ("AUC24", "AUC"):
                window = last if t.get("metric") == "AUC24" else np.ones_like(times, dtype=bool)
                metric = np.trapezoid(conc[:, window], times[window], axis=1)
                metric_name = ("AUC over the last 24 h [mg*h/L]" if t.get("metric") == "AUC24"
                               else f"AUC over the {request.horizon_h:g} h horizon [mg*h/L]")
                p_adverse = np.mean(_adverse(t, metric))
            elif t.get("metric") == "trough":
                metric = conc[:, -1]
                metric_name = f"trough concentration at {request.horizon_h:g} h [mg/L]"
                p_adverse = np.mean(_adverse(t, metric))
            else:
                metric = conc[:, last].mean(axis=1)
                metric_name = "mean concentration over the last 24 h [mg/L]"
                p_adverse = np.mean(conc.max(axis=1) > t["adverse_threshold"])
            p_target = np.mean((metric >= t["target_low"]) & (metric <= t["target_high"]))
        hourly = np.isclose(np.mod(times, 1.0), 0.0) | (times == times[-1])
        q = np.percentile(conc[:, hourly], [5, 50, 95], axis=0)
        outcome = RegimenOutcome(
            regimen=regimen, times_h=times[hourly].tolist(), concentration_p05=q[0].tolist(),
            concentration_p50=q[1].tolist(), concentration_p95=q[2].tolist(), metric_name=metric_name,
            metric_p05=float(np.percentile(metric, 5)), metric_p50=float(np.median(metric)),
            metric_p95=float(np.percentile(metric, 95)), probability_target=float(p_target),
            probability_adverse=float(p_adverse),
        )
        if response is not None:
            r = np.percentile(response[:, hourly], [5, 50, 95], axis=0)
            outcome.response_name = "INR"
            outcome.response_p05, outcome.response_p50, outcome.response_p95 = r[0].tolist(), r[1].tolist(), r[2].tolist()
        outcomes.append(outcome)
    target, adverse = _targets_text(drug)
    return DrugComparison(drug=drug.name, model=drug.model_name, source=drug.source,
                          concentration_name=drug.concentration_name, target=target, adverse=adverse,
                          personalised_from_levels=personalised, outcomes=outcomes, genotype=adjustments,
                          population_genotypes=mixture)


# ---- dose individualisation --------------------------------------------------------------------------


def _candidate_doses(drug: DrugModel) -> Array:
    if drug.dose_candidates_mg is not None:
        low, high, step = drug.dose_candidates_mg
        return np.arange(low, high + step / 2, step)
    if drug.has_inr:
        return np.arange(0.5, 20.01, 0.5)
    if drug.name == "vancomycin":
        return np.arange(250.0, 4000.1, 250.0)
    return np.arange(50.0, 1500.1, 50.0)


def _steady_state_metric(drug: DrugModel, params: Mapping[str, Array], amount: float, tau: float, duration: float,
                         f_oral: Array) -> tuple[Array, Array]:
    """The target metric at steady state for each parameter set, and whether it is adverse."""
    t = drug.targets
    route = drug.default_route
    average = f_oral * amount / tau / params["CL"]  # exact steady-state average for linear PK
    if drug.has_inr:
        metric = warfarin_inr_steady_state(average, params)
        return metric, metric > t["adverse_threshold"]
    if t.get("metric") in ("AUC24", "AUC"):
        metric = average * (24.0 if t.get("metric") == "AUC24" else tau)  # AUC over 24 h / over one interval
        return metric, _adverse(t, metric)
    grid = np.linspace(0.0, tau, 25)[:-1]
    profile = steady_state(drug.structure, drug.pk_parameters(params), amount, tau, route, grid,
                           infusion_duration_h=duration)
    if t.get("metric") == "trough":
        trough = profile.min(axis=1)
        return trough, _adverse(t, trough)
    return average, profile.max(axis=1) > t["adverse_threshold"]


def individualise(request: IndividualiseRequest) -> DoseSuggestion:
    """MAP-estimate the patient's parameters from measured levels, then pick the steady-state regimen
    with the highest probability of target attainment whose adverse probability stays at or below
    ``max_adverse_probability`` (both over the posterior). Ties go to the smaller daily dose."""
    drug = load_drug(request.drug)
    rng = np.random.default_rng(request.seed)
    typical1, adjustments = typical_with_genotype(drug, request.patient)
    post = _posterior(drug, typical1, request.history, request.levels)
    eta = rng.multivariate_normal(post.eta[0], post.covariance[0], size=request.n_samples)
    params = drug.bsv.apply({k: np.repeat(v, request.n_samples) for k, v in typical1.items()}, eta)
    t = drug.targets
    route = drug.default_route
    intervals = request.intervals_h or (list(drug.individualise_intervals_h) if drug.individualise_intervals_h
                                        else [24.0] if drug.has_inr else [8.0, 12.0, 24.0]
                                        if drug.name == "vancomycin" else [8.0, 12.0])
    best: tuple[float, float, float, Regimen, Array] | None = None
    fallback: tuple[float, float, float, Regimen, Array] | None = None
    f_oral = params["F"] if "F" in params and route is Route.ORAL else np.ones(request.n_samples)
    for tau in intervals:
        for dose in _candidate_doses(drug):
            per_gram = max(1.0, dose / 1000.0) if drug.name == "vancomycin" else 1.0  # vancomycin: 1 h per gram
            duration = min(drug.default_infusion_duration_h * per_gram, tau) if route is Route.IV_INFUSION else 0.0
            metric, adverse = _steady_state_metric(drug, params, dose * drug.dose_fraction, tau, duration, f_oral)
            p_target = float(np.mean((metric >= t["target_low"]) & (metric <= t["target_high"])))
            p_adverse = float(np.mean(adverse))
            regimen = Regimen(dose=f"{dose:g} mg", route=route, interval_h=tau, n_doses=1, infusion_duration_h=duration)
            key = (p_target, -p_adverse, -dose * 24.0 / tau, regimen, metric)
            if p_adverse <= request.max_adverse_probability and (best is None or key[:3] > best[:3]):
                best = key
            if fallback is None or (-p_adverse, p_target) > (fallback[1], fallback[0]):
                fallback = key
    chosen = best or fallback
    assert chosen is not None
    p_target, neg_adverse, _, regimen, metric = chosen
    estimates = []
    for j, name in enumerate(post.names):
        sd = float(np.sqrt(post.covariance[0, j, j]))
        value = float(post.parameters[name][0])
        estimates.append(ParameterEstimate(
            name=name, unit=drug.parameters[name].unit, population=float(typical1[name][0]), individual=value,
            ci90_low=value * float(np.exp(-1.645 * sd)), ci90_high=value * float(np.exp(1.645 * sd))))
    metric_name = "steady-state INR" if drug.has_inr else {
        "AUC24": "steady-state AUC24 [mg*h/L]", "AUC": "steady-state AUC per dosing interval [mg*h/L]",
        "trough": "steady-state trough concentration [mg/L]"}.get(str(t.get("metric")),
                                                                 "steady-state average concentration [mg/L]")
    return DoseSuggestion(
        drug=drug.name, regimen=regimen, probability_target=p_target, probability_adverse=-neg_adverse,
        metric_name=metric_name, metric_p50=float(np.median(metric)), metric_p05=float(np.percentile(metric, 5)),
        metric_p95=float(np.percentile(metric, 95)), parameters=estimates, feasible=best is not None, genotype=adjustments,
        note=("MAP estimate from measured levels; probabilities over the posterior of the individual parameters."
              if best is not None else
              "No candidate keeps the adverse probability below the threshold; showing the safest regimen."),
    )
