"""Conformance of every registered alert rule (entry points ``medtwin.alert_rules`` and programmatic ones):
metadata complete, state round-trips through JSON, same input gives the same verdicts, no verdict on empty
input, finite values in every verdict. Inputs are drawn over each consumed metric's plausible range (the
vocabulary's), so each rule sees readings that trigger it and readings that clear it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import orjson
import pytest

from medtwin.alerts.registry import create_rules, rule_names
from medtwin.alerts.repository import SEVERITY_RANK
from medtwin.alerts.rule import AlertRule, RuleInput, Verdict
from medtwin.alerts.settings import declared
from medtwin.hospital.equipment_live import SUBJECT, load_assets
from medtwin.vocab import GlucoseForecast, Sample, metrics

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PATIENT = "conformance"
SEEDS = (1, 2, 3)


def rule_by_name(name: str) -> AlertRule:
    return next(r for r in create_rules() if r.info.name == name)


@dataclass(frozen=True)
class Signal:
    """An equipment degradation signal as the equipment file defines it (the vocabulary of devices)."""

    unit: str
    min: float
    max: float
    integer: bool = False


@cache
def known() -> dict[str, Any]:
    """Every metric a rule may consume: the vocabulary's patient metrics and the equipment file's degradation
    signals (drawn over 0 .. 1.5x their service threshold, so a rule sees devices both fine and due)."""
    table: dict[str, Any] = dict(metrics())
    for asset in load_assets().values():
        table[asset.kind.signal] = Signal(asset.kind.signal_unit, 0.0, 1.5 * asset.kind.threshold)
    return table


def subject(rule: AlertRule) -> str:
    """Whom the rule's input is about: an asset carrying its signals for an equipment rule, else a patient."""
    assets = [a for a in load_assets().values() if a.kind.signal in rule.info.metrics]
    return SUBJECT + assets[0].id if assets and rule.info.metrics and all(
        m in {a.kind.signal for a in assets} for m in rule.info.metrics) else PATIENT


def batches(rule: AlertRule, seed: int, n_batches: int = 12, per_batch: int = 6) -> list[RuleInput]:
    """Batches of new data for the rule: its metrics every 5 min over their plausible range (rounded as a
    device would send them), a forecast per batch if it reads forecasts, its settings changed once."""
    rng = np.random.default_rng(seed)
    table = known()
    who = subject(rule)
    out: list[RuleInput] = []
    minute = 0
    for b in range(n_batches):
        samples: list[Sample] = []
        levels = {metric: level(table[metric].min, table[metric].max, rng) for metric in rule.info.metrics}
        for _ in range(per_batch):
            minute += 5
            for metric in rule.info.metrics:
                info = table[metric]
                noise = float(rng.normal(0.0, 0.02 * (info.max - info.min)))
                value = min(info.max, max(info.min, levels[metric] + noise))
                value = float(round(value)) if info.integer else round(value, 1)
                t = T0 + timedelta(minutes=minute)
                samples.append(Sample(who, metric, t, value, info.unit, value, info.unit, "dev", "test",
                                      f"{metric}|{minute}"))
        forecasts = [forecast(T0 + timedelta(minutes=minute), rng)] if rule.info.forecasts else []
        changed = frozenset(rule.info.settings) if b == n_batches // 2 else frozenset()
        settings = {key: declared()[key].allowed[-1] for key in changed}
        out.append(RuleInput(who, samples, forecasts, settings, changed))
    return out


def level(low: float, high: float, rng: np.random.Generator) -> float:
    """A batch's level: log-uniform over a positive range (as much time near 10-100 as near 100-1000)."""
    if low > 0:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return float(rng.uniform(low, high))


def forecast(issued_at: datetime, rng: np.random.Generator) -> GlucoseForecast:
    now = float(rng.uniform(40, 300))
    means = tuple(round(now + float(d), 1) for d in np.cumsum(rng.normal(-3, 8, 12)))
    means = tuple(max(20.0, m) for m in means)
    return GlucoseForecast(patient_id=PATIENT, issued_at=issued_at, glucose_now_mg_dl=now,
                           horizons_min=tuple(range(5, 61, 5)), mean_mg_dl=means,
                           lower80_mg_dl=tuple(m - 15 for m in means), upper80_mg_dl=tuple(m + 15 for m in means),
                           lower95_mg_dl=tuple(m - 25 for m in means), upper95_mg_dl=tuple(m + 25 for m in means),
                           insulin_sensitivity_ratio=1.0, twin_version=None)


def run(rule: AlertRule, inputs: list[RuleInput], state: Any = None) -> tuple[list[list[Verdict]], Any]:
    """Evaluate batch after batch, holding conditions as the engine would."""
    state = rule.new_state() if state is None else state
    held: dict[str, str] = {}
    out = []
    for data in inputs:
        verdicts = rule.evaluate(RuleInput(data.patient_id, data.samples, data.forecasts, data.settings,
                                           data.changed_settings, dict(held)), state)
        for v in verdicts:
            if v.holds and v.candidate is not None and v.cleared_at is None:
                held[v.rule] = v.candidate.dedupe_key
            elif not v.holds or v.candidate is None:
                held.pop(v.rule, None)
            # holds with cleared_at: began and ended within the pass; the engine opens and clears it and
            # leaves another held condition of the same rule alone
        out.append(verdicts)
    return out, state


def finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True


NAMES = rule_names()


def test_the_four_medtwin_rules_are_registered() -> None:
    assert set(NAMES) >= {"glucose-episodes", "predicted-hypo", "news2", "hr-deviation"}


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_complete(name: str) -> None:
    rule = rule_by_name(name)
    rule.info.check()
    assert set(rule.info.metrics) <= set(known()), "consumes a metric the vocabulary does not know"
    assert set(rule.info.settings) <= set(declared()), "reads an undeclared setting"
    assert set(rule.info.forecasts) <= {"glucose"}
    assert orjson.loads(orjson.dumps(rule.info.as_json()))["name"] == name
    assert bool(rule.info.legacy_kinds) == callable(getattr(rule, "legacy_state", None)), \
        "legacy_kinds and legacy_state go together"
    if rule.info.legacy_kinds:
        assert rule.legacy_state({}) is None  # type: ignore[attr-defined]  # nothing saved: nothing restored


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_same_input_same_verdicts_and_finite_values(name: str, seed: int) -> None:
    rule = rule_by_name(name)
    first, _ = run(rule, batches(rule, seed))
    second, _ = run(rule_by_name(name), batches(rule, seed))
    assert first == second
    for verdicts in first:
        for v in verdicts:
            assert v.rule in {k.name for k in rule.info.alerts} and v.occurrences >= 1
            if v.holds:
                assert v.candidate is not None and v.candidate.rule == v.rule
                assert v.candidate.severity in SEVERITY_RANK
                kind = next(k for k in rule.info.alerts if k.name == v.rule)
                assert v.candidate.severity in kind.severities, "a severity the rule does not declare"
                assert v.candidate.score is None or math.isfinite(v.candidate.score)
                assert finite(v.candidate.details) and v.candidate.message


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_state_round_trips_through_json(name: str, seed: int) -> None:
    rule = rule_by_name(name)
    inputs = batches(rule, seed)
    _, state = run(rule, inputs[:8])
    raw = orjson.loads(orjson.dumps(rule.state_to_json(state)))
    restored = rule.state_from_json(raw)
    assert orjson.loads(orjson.dumps(rule.state_to_json(restored))) == raw
    rest_a, _ = run(rule, inputs[8:], state)
    rest_b, _ = run(rule, inputs[8:], restored)
    assert rest_a == rest_b


@pytest.mark.parametrize("name", NAMES)
def test_no_verdict_on_empty_input(name: str) -> None:
    rule = rule_by_name(name)
    state = rule.new_state()
    assert rule.evaluate(RuleInput(PATIENT), state) == []
    _, state = run(rule, batches(rule, 7))
    assert rule.evaluate(RuleInput(PATIENT, held={k.name: "x" for k in rule.info.alerts}), state) == []


def test_some_rule_raises_and_clears_on_these_inputs() -> None:
    """The inputs are not inert: over all seeds every rule that can trigger on them does."""
    raised: set[str] = set()
    for name in NAMES:
        rule = rule_by_name(name)
        for seed in SEEDS:
            verdicts, _ = run(rule, batches(rule, seed))
            raised |= {v.rule for vs in verdicts for v in vs if v.holds}
    assert {"hypo-l1", "hyper-l1", "predicted-hypo", "news2", "equipment-maintenance"} <= raised
