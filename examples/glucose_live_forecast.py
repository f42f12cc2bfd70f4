"""Example: the live glucose twin. A virtual patient's day (CGM every 5 min, meals, boluses, basal) arrives
hour by hour, as a phone would upload it; the live twin folds each reading into its ensemble and forecasts
the next hour. Prints each hourly forecast against what then happened and saves a chart (PNG).

Run: ``.venv/bin/python examples/glucose_live_forecast.py [--out DIR]`` (default: a new temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medtwin.physiology.synthetic import synthetic_log  # noqa: E402
from medtwin.physiology.uva_padova import virtual_patients  # noqa: E402
from medtwin.store.database import Store  # noqa: E402
from medtwin.twin.live import LiveGlucoseService, samples_from_log  # noqa: E402
from medtwin.vocab import GlucoseForecast  # noqa: E402

START = datetime(2024, 9, 2, tzinfo=UTC)  # midnight: meals at about 07:00, 12:30, (16:00), 19:00


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder for the chart (default: a temp folder)")
    parser.add_argument("--patient", default="adolescent#004", help="virtual patient (the truth)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="medtwin-live-"))
    out.mkdir(parents=True, exist_ok=True)

    # the truth: a simulated day with random meals, basal-bolus therapy and a noisy CGM
    log, truth = synthetic_log(virtual_patients([args.patient]), 1, np.random.default_rng(21))
    samples = samples_from_log("demo-patient", log, START)
    t_min = np.asarray(log.cgm_t_min)
    cgm = np.asarray(log.cgm_mg_dl)

    # the live twin on a throw-away store; it knows nothing of the patient (cohort prior)
    store = Store(f"sqlite:///{out / 'live.db'}")
    store.migrate()
    service = LiveGlucoseService(store, clock=lambda: datetime.now(UTC), rng=np.random.default_rng(0),
                                 start_worker=False)
    forecasts: list[GlucoseForecast] = []
    service.add_forecast_listener(forecasts.append)
    for hour in range(24):  # hourly uploads
        lo, hi = START + timedelta(hours=hour), START + timedelta(hours=hour + 1)
        service.on_samples([s for s in samples if lo <= s.time < hi])
        service.process_pending()

    print(f"patient {args.patient}: {len(t_min)} CGM readings, {len(log.meals)} meals, {len(log.boluses)} boluses")
    print("issued  now   +30 min forecast (80 %)      then CGM  true | +60 min forecast   then CGM  true | "
          "basis (twin share at 30/60 min; 0 % = the last reading held)")
    errors, naive = [], []
    for f in forecasts:
        issued = (f.issued_at - START).total_seconds() / 60
        j = int(np.searchsorted(t_min, issued))
        if j + 12 >= len(t_min):
            continue
        m30, lo30, hi30, _, _ = f.at(30)
        m60, lo60, hi60, _, _ = f.at(60)
        errors.append(m30 - truth[j + 6])
        naive.append(cgm[j] - truth[j + 6])
        print(f"{f.issued_at:%H:%M}  {f.glucose_now_mg_dl:4.0f}   {m30:5.0f} ({lo30:4.0f}-{hi30:4.0f})"
              f"          {cgm[j + 6]:4.0f}  {truth[j + 6]:4.0f} | {m60:5.0f} ({lo60:4.0f}-{hi60:4.0f})"
              f"  {cgm[j + 12]:4.0f}  {truth[j + 12]:4.0f} | {basis(f)}")
    held = sum(1 for f in forecasts if f.twin_share is not None and f.twin_share[f.horizons_min.index(30)] == 0)
    print(f"{held} of {len(forecasts)} forecasts held the last reading at 30 min (the twin had not yet shown skill "
          "for this patient)")
    status = service.status("demo-patient")
    assert status is not None
    rmse = float(np.sqrt(np.mean(np.square(errors))))
    naive_rmse = float(np.sqrt(np.mean(np.square(naive))))
    print(f"hourly 30-min forecasts vs true glucose: RMSE {rmse:.1f} mg/dL (the last reading as forecast: "
          f"{naive_rmse:.1f} mg/dL)")
    low, high = status.insulin_sensitivity_ci95
    print(f"live twin after {status.samples_assimilated} readings: insulin sensitivity x{status.insulin_sensitivity_ratio:.2f} "
          f"of the cohort prior (95 % {low:.2f}-{high:.2f}), twin version {status.live_twin_version}")

    fig, ax = plt.subplots(figsize=(12, 4.5))
    hours = t_min / 60
    ax.plot(hours, truth, color="black", lw=1.2, label="true interstitial glucose")
    ax.plot(hours, cgm, ".", ms=3, color="tab:blue", label="CGM reading")
    for i, f in enumerate(forecasts):
        x = (f.issued_at - START).total_seconds() / 3600 + np.asarray(f.horizons_min) / 60
        ax.fill_between(x, f.lower95_mg_dl, f.upper95_mg_dl, color="tab:orange", alpha=0.12, lw=0,
                        label="95 % interval" if i == 0 else None)
        ax.fill_between(x, f.lower80_mg_dl, f.upper80_mg_dl, color="tab:orange", alpha=0.25, lw=0,
                        label="80 % interval" if i == 0 else None)
        ax.plot(x, f.mean_mg_dl, color="tab:red", lw=1, label="forecast" if i == 0 else None)
    for meal in log.meals:
        ax.axvline(meal.time_min / 60, color="tab:green", alpha=0.3, lw=1)
    ax.set_xlabel("hour of day")
    ax.set_ylabel("glucose [mg/dL]")
    ax.set_title(f"Live glucose twin, {args.patient}: hourly 60-min forecasts (meals in green)")
    ax.legend(loc="upper right", fontsize=8)
    chart = out / "live_glucose_forecast.png"
    fig.tight_layout()
    fig.savefig(chart, dpi=90)
    plt.close(fig)
    store.dispose()
    print(f"chart: {chart}")


def basis(f: GlucoseForecast) -> str:
    """The twin's share in the mean at 30 and 60 min (GlucoseForecast.twin_share), and the sentence's words."""
    if f.twin_share is None:
        return "not recorded"
    shares = "/".join(f"{100 * f.twin_share[f.horizons_min.index(m)]:.0f} %" for m in (30, 60))
    return f"twin {shares}{f.basis_words(30)}"


if __name__ == "__main__":
    main()
