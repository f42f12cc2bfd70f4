"""Online forecast corrections (medtwin.physiology.online_skill): the blend weight is the least-squares one,
shrunk by the evidence of its out-of-sample gain; a twin without skill is not shown (persistence is), one
that loses its skill is dropped and one that gains it taken up; intervals too narrow are widened until they
cover as nominal (adaptive conformal), nothing is learnt from a forecast before its reading arrives, a
forecast whose reading falls in a gap is dropped, and the record round-trips through JSON (and a record of
the previous format is read)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.online_skill import ForecastSkill, SkillSettings


def run(truth: np.ndarray, twin_noise_sd: float, band_sd: float, rng: np.random.Generator,
        skill: ForecastSkill | None = None) -> tuple[ForecastSkill, list[np.ndarray]]:
    """A random walk read every 5 min; the 'twin' forecasts 30 min ahead as the truth plus noise, with a
    band of +-1.28 and +-1.96 ``band_sd``; persistence is the last value."""
    skill = skill or ForecastSkill((30,), SkillSettings(min_scored=12))
    shown_rows = []
    for k, value in enumerate(truth[:-6]):
        skill.observe(5.0 * k, float(value))
        mean = np.array([truth[k + 6] + twin_noise_sd * rng.standard_normal()])
        shown = skill.show(5.0 * k, float(value), mean, mean - 1.28 * band_sd, mean + 1.28 * band_sd,
                           mean - 1.96 * band_sd, mean + 1.96 * band_sd)
        shown_rows.append(np.array([shown.mean_mg_dl[0], shown.lower80_mg_dl[0], shown.upper80_mg_dl[0],
                                    shown.lower95_mg_dl[0], shown.upper95_mg_dl[0], truth[k + 6]]))
    return skill, shown_rows


def test_a_twin_worse_than_persistence_falls_back_and_a_good_one_is_kept() -> None:
    rng = np.random.default_rng(1)
    truth = 120 + np.cumsum(rng.normal(0, 2.0, 3000))  # 30-min change SD ~4.9 mg/dL
    bad, _ = run(truth, 25.0, 25.0, rng)
    good, _ = run(truth, 1.0, 1.0, rng)
    assert bad.weight()[0] < 0.15 and good.weight()[0] > 0.9
    assert bad.mse_twin[0] > 10 * bad.mse_persistence[0] and good.mse_twin[0] < bad.mse_persistence[0]


def test_the_weight_is_the_least_squares_blend() -> None:
    """Twin error e1, persistence error e2 independent: the optimal weight on the twin is
    var(e2) / (var(e1) + var(e2)) (Bates & Granger 1969); that blend beats persistence (MSE 23 vs 36), so the
    evidence test passes and it is what is shown."""
    rng = np.random.default_rng(2)
    skill = ForecastSkill((5,), SkillSettings(forget_per_score=1e-3, min_scored=1))
    for k in range(8000):
        y = rng.normal(100, 30)
        last = y + rng.normal(0, 6.0)  # persistence error SD 6
        twin = np.array([y + rng.normal(0, 8.0)])  # twin error SD 8
        skill.show(5.0 * k, last, twin, twin - 1, twin + 1, twin - 2, twin + 2)
        skill.observe(5.0 * k + 5.0, y)
    assert skill.candidate()[0] == pytest.approx(36 / (36 + 64), abs=0.05)
    t, z = skill.evidence()[0], skill.settings.evidence_z
    assert t > 5 and skill.weight()[0] == pytest.approx(skill.candidate()[0] * (1 - (z / t) ** 2))  # ~ the blend
    margin = skill.settings.evidence_margin  # the gain tested: MSE cut by the optimal blend beyond the margin
    assert skill.gain_mean[0] == pytest.approx((1 - margin) * 36 - 36 * 64 / 100, rel=0.25)


def test_intervals_too_narrow_are_widened_to_nominal_coverage() -> None:
    """Persistence shown throughout (evidence_z = inf): its 30-min error SD is 1.5 sqrt(6) mg/dL, the twin's
    band says 1, so the scale on the band's half-widths must grow to about 1.5 sqrt(6)."""
    rng = np.random.default_rng(3)
    truth = 150 + np.cumsum(rng.normal(0, 1.5, 6000))
    skill, rows = run(truth, 10.0, 1.0, rng, ForecastSkill((30,), SkillSettings(evidence_z=math.inf)))
    late = np.array(rows[2000:])
    assert np.all(late[:, 0] == truth[2000:-6])  # persistence shown
    inside80 = np.mean((late[:, 5] >= late[:, 1]) & (late[:, 5] <= late[:, 2]))
    inside95 = np.mean((late[:, 5] >= late[:, 3]) & (late[:, 5] <= late[:, 4]))
    assert abs(inside80 - 0.80) < 0.02 and abs(inside95 - 0.95) < 0.015
    assert np.exp(skill.log_scale[0, 0]) == pytest.approx(1.5 * math.sqrt(6.0), rel=0.25)
    early = np.array(rows[:50])  # the band the twin gave covers far less at first
    assert np.mean((early[:, 5] >= early[:, 1]) & (early[:, 5] <= early[:, 2])) < 0.6


def test_nothing_is_learnt_before_the_reading_and_a_gap_drops_the_forecast() -> None:
    skill = ForecastSkill((30, 60), SkillSettings(tolerance_min=2.5))
    skill.show(0.0, 100.0, np.array([90.0, 80.0]), np.array([80.0, 70.0]), np.array([100.0, 90.0]),
               np.array([75.0, 65.0]), np.array([105.0, 95.0]))
    assert skill.observe(25.0, 120.0) == 0 and skill.n_scored.tolist() == [0, 0]
    assert skill.observe(31.0, 120.0) == 1 and skill.n_scored.tolist() == [1, 0]
    assert skill.mse_twin[0] == pytest.approx(900.0) and skill.mse_persistence[0] == pytest.approx(400.0)
    assert skill.misses[:, 0].tolist() == [1, 1]
    assert skill.observe(70.0, 90.0) == 0 and skill.pending == []  # 60-min target fell in a gap: dropped
    assert skill.n_scored.tolist() == [1, 0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(40, 400), min_size=3, max_size=30), st.integers(0, 2**32 - 1))
def test_the_record_round_trips_through_json_and_bands_stay_nested(readings: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    skill = ForecastSkill((5, 10), SkillSettings(min_scored=1))
    for k, value in enumerate(readings):
        skill.observe(5.0 * k, value)
        mean = np.array([value, value]) + rng.normal(0, 10, 2)
        shown = skill.show(5.0 * k, value, mean, mean - 5, mean + 5, mean - 8, mean + 8)
        assert np.all(shown.lower95_mg_dl <= shown.lower80_mg_dl) and np.all(shown.lower80_mg_dl <= shown.mean_mg_dl)
        assert np.all(shown.mean_mg_dl <= shown.upper80_mg_dl) and np.all(shown.upper80_mg_dl <= shown.upper95_mg_dl)
        assert np.all((shown.weight >= 0) & (shown.weight <= 1))
    again = ForecastSkill.from_dict(json.loads(json.dumps(skill.to_dict(), allow_nan=False)))  # as orjson: no NaN
    assert again.to_dict() == skill.to_dict()


def test_bad_settings_and_horizons_are_refused() -> None:
    with pytest.raises(PhysiologyInputError, match="forget_per_score"):
        SkillSettings(forget_per_score=0.0)
    with pytest.raises(PhysiologyInputError, match="horizons_min"):
        ForecastSkill((30, 10))
    with pytest.raises(PhysiologyInputError, match="format"):
        ForecastSkill.from_dict({"format": 3})
    with pytest.raises(PhysiologyInputError, match="evidence_z"):
        SkillSettings(evidence_z=math.nan)
    with pytest.raises(PhysiologyInputError, match="evidence_margin"):
        SkillSettings(evidence_margin=1.0)


def test_without_a_last_reading_the_twin_is_shown_and_only_the_intervals_learn() -> None:
    skill = ForecastSkill((5,), SkillSettings(min_scored=0))
    shown = skill.show(0.0, float("nan"), np.array([100.0]), np.array([90.0]), np.array([110.0]),
                       np.array([85.0]), np.array([115.0]))
    again = ForecastSkill.from_dict(json.loads(json.dumps(skill.to_dict(), allow_nan=False)))
    assert math.isnan(again.pending[0][1]) and again.pending[0][2].tolist() == [100.0]
    assert shown.mean_mg_dl.tolist() == [100.0] and shown.weight.tolist() == [1.0]
    assert skill.observe(5.0, 130.0) == 1
    assert skill.n_scored.tolist() == [0] and skill.log_scale[0, 0] > 0 and np.all(np.isfinite(skill.mse_twin))
    assert json.loads(json.dumps(skill.to_dict()))["pending"] == []


def stream_twin(truth: np.ndarray, twin: np.ndarray, settings: SkillSettings) -> tuple[np.ndarray, np.ndarray]:
    """Stream readings ``truth`` (5-min) with the 30-min twin forecast ``twin[k]`` issued at reading k;
    returns the shown means and weights (per issued forecast, the last 6 readings issue none)."""
    skill = ForecastSkill((30,), settings)
    means, weights = [], []
    for k, value in enumerate(truth[:-6]):
        skill.observe(5.0 * k, float(value))
        mean = np.array([twin[k]])
        shown = skill.show(5.0 * k, float(value), mean, mean - 5, mean + 5, mean - 8, mean + 8)
        means.append(shown.mean_mg_dl[0])
        weights.append(shown.weight[0])
    return np.array(means), np.array(weights)


@pytest.mark.parametrize("case", ["no information", "wrong direction", "good then useless", "useless then good"])
def test_the_shown_forecast_departs_from_persistence_only_with_evidence(case: str) -> None:
    """The fall-back's promise (module doc): a twin without skill is not shown (persistence is), a twin that
    loses its skill is dropped before it costs more than it earned, and one that gains it is taken up; in
    every case the forecast shown is not worse than persistence over the record."""
    rng = np.random.default_rng(11)
    truth = 140 + np.cumsum(rng.normal(0, 2.0, 4000))
    future = np.concatenate([truth[6:], np.full(6, np.nan)])
    informed = future + rng.normal(0, 2.0, truth.size)  # knows the 30-min future up to 2 mg/dL
    noise = truth + rng.normal(0, 6.0, truth.size)  # the last reading plus noise
    half = truth.size // 2
    twin = {"no information": noise, "wrong direction": 2 * truth - informed,
            "good then useless": np.where(np.arange(truth.size) < half, informed, noise),
            "useless then good": np.where(np.arange(truth.size) < half, noise, informed)}[case]
    means, weights = stream_twin(truth, twin, SkillSettings())
    target, last = truth[6:], truth[:-6]
    shown_mse, persistence_mse = np.mean((means - target) ** 2), np.mean((last - target) ** 2)
    assert shown_mse <= persistence_mse, (case, shown_mse, persistence_mse)
    if case in ("no information", "wrong direction"):
        assert np.mean(weights == 0) > 0.95 and shown_mse >= 0.99 * persistence_mse
    else:
        good = slice(0, half - 6) if case == "good then useless" else slice(half, None)
        assert np.mean(weights[good] > 0.5) > 0.7  # the skilful half is shown once its evidence is in
        assert shown_mse < 0.7 * persistence_mse  # the twin alone in its skilful half: about 0.58


def test_a_record_saved_before_the_evidence_test_is_read_and_starts_its_test_afresh() -> None:
    """A live filter saved with format 1 (the in-sample blend) resumes: its moments kept, no gains yet, its
    pending forecasts scored for the blend and intervals but not for the test (no candidate was kept)."""
    old = {"format": 1, "horizons_min": [30], "log_scale": [[0.2], [0.1]], "mse_twin": [100.0],
           "mse_persistence": [150.0], "cross": [40.0], "spread": [80.0], "n_scored": [50.0], "misses": [[9.0], [2.0]],
           "pending": [[0.0, 120.0, [110.0], [[118.0], [100.0], [130.0], [95.0], [140.0]]]]}
    skill = ForecastSkill.from_dict(old)
    assert skill.candidate()[0] == pytest.approx(0.5) and skill.n_gains[0] == 0 and skill.weight()[0] == 0
    assert skill.observe(30.0, 100.0) == 1 and skill.n_scored[0] == 51 and skill.n_gains[0] == 0
    assert skill.to_dict()["format"] == 2
