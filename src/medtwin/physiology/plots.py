"""Plots: glucose trajectory with meals and insulin, and the AGP; PNG (matplotlib) and offline HTML (inline SVG)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from medtwin.physiology.metrics import AmbulatoryGlucoseProfile  # noqa: E402
from medtwin.physiology.service import SimulationResult  # noqa: E402
from medtwin.vocab.glucose import HYPER_L1, HYPO_L1  # noqa: E402


def _save(fig: Figure, out: Path) -> Path:
    """Lay out, write as a 100 dpi PNG and release the figure."""
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def trajectory_png(result: SimulationResult, path: str | Path, patient: int = 0) -> Path:
    """Glucose (true and CGM) with the 70-180 band, meals (g) and boluses (U) for one patient."""
    out = Path(path)
    p = result.patients[patient]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    hours = np.asarray(result.t_min) / 60
    top.axhspan(HYPO_L1, HYPER_L1, color="#d8f0d8", label=f"{HYPO_L1:.0f}-{HYPER_L1:.0f} mg/dL")
    top.plot(hours, p.glucose_mg_dl, color="#1f4e79", label="glucose (model)")
    top.plot(np.asarray(result.cgm_t_min) / 60, p.cgm_mg_dl, ".", ms=3, color="#c55a11", label="CGM")
    top.set_ylabel("glucose [mg/dL]")
    top.set_title(
        f"{p.name}: TIR {p.metrics.time_in_range_70_180_percent:.0f}%, mean {p.metrics.mean_mg_dl:.0f} mg/dL"
    )
    top.legend(loc="upper right", fontsize=8)
    bottom.bar(
        [m["time_min"] / 60 for m in result.meals],
        [m["carbs_g"] for m in result.meals],
        width=0.3,
        color="#70ad47",
        label="carbohydrate [g]",
    )
    bottom.bar(
        [b.time_min / 60 for b in result.boluses],
        [10 * b.units[patient] for b in result.boluses],
        width=0.15,
        color="#4472c4",
        label="bolus [0.1 U]",
    )
    bottom.set_xlabel("time [h]")
    bottom.legend(loc="upper right", fontsize=8)
    return _save(fig, out)


def agp_png(
    agp: AmbulatoryGlucoseProfile, path: str | Path, title: str = "Ambulatory glucose profile"
) -> Path:
    out = Path(path)
    fig, ax = plt.subplots(figsize=(10, 4))
    h = np.asarray(agp.minute_of_day) / 60
    ax.axhspan(HYPO_L1, HYPER_L1, color="#d8f0d8")
    ax.fill_between(h, agp.p5, agp.p95, color="#9dc3e6", alpha=0.5, label="5-95%")
    ax.fill_between(h, agp.p25, agp.p75, color="#2e75b6", alpha=0.5, label="25-75%")
    ax.plot(h, agp.p50, color="#1f4e79", label="median")
    ax.set_xlabel("time of day [h]")
    ax.set_ylabel("glucose [mg/dL]")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def _svg_y(mg_dl: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
    """The chart's y coordinate of a glucose value (0-400 mg/dL over 300 px, 0 at y = 350)."""
    return 350 - 300 * mg_dl / 400


def _polyline(x: np.ndarray, y: np.ndarray, x_max: float, css: str) -> str:
    px = 50 + 900 * x / x_max
    py = np.asarray(_svg_y(np.clip(y, 0, 400)))
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
    return f'<polyline fill="none" style="{css}" points="{points}"/>'


def trajectory_html(result: SimulationResult, path: str | Path, patient: int = 0) -> Path:
    """Self-contained interactive HTML (inline SVG + a few lines of JS; no network): hover shows values."""
    out = Path(path)
    p = result.patients[patient]
    t = np.asarray(result.t_min)
    g = np.asarray(p.glucose_mg_dl)
    x_max = float(t[-1]) or 1.0
    band = (f'<rect x="50" y="{_svg_y(HYPER_L1):.1f}" width="900" height="{_svg_y(HYPO_L1) - _svg_y(HYPER_L1):.1f}" '
            'fill="#d8f0d8"/>')
    meals = "".join(
        f'<circle cx="{50 + 900 * m["time_min"] / x_max:.1f}" cy="360" r="{3 + m["carbs_g"] / 15:.1f}" fill="#70ad47">'
        f"<title>meal {m['carbs_g']:g} g at {m['time_min'] / 60:.2f} h</title></circle>"
        for m in result.meals
    )
    data = ",".join(f"[{a:.0f},{b:.1f}]" for a, b in zip(t, g, strict=True))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(p.name)} glucose</title>
<style>body{{font-family:sans-serif}} #tip{{position:absolute;background:#fff;border:1px solid #888;padding:2px 6px}}</style>
</head><body><h3>{html.escape(p.name)}: time in range {p.metrics.time_in_range_70_180_percent:.1f}%</h3>
<svg id="chart" width="1000" height="380" xmlns="http://www.w3.org/2000/svg">{band}
{_polyline(t, g, x_max, "stroke:#1f4e79;stroke-width:2")}{meals}
<text x="5" y="{_svg_y(HYPER_L1):.0f}">{HYPER_L1:.0f}</text><text x="5" y="{_svg_y(HYPO_L1):.0f}">{HYPO_L1:.0f}</text></svg>
<div id="tip" hidden></div>
<script>
const data=[{data}], xmax={x_max};
const svg=document.getElementById('chart'), tip=document.getElementById('tip');
svg.addEventListener('mousemove', e => {{
  const r=svg.getBoundingClientRect(); const t=(e.clientX-r.left-50)/900*xmax;
  let best=data[0]; for (const d of data) if (Math.abs(d[0]-t)<Math.abs(best[0]-t)) best=d;
  tip.hidden=false; tip.style.left=(e.pageX+10)+'px'; tip.style.top=(e.pageY+10)+'px';
  tip.textContent=(best[0]/60).toFixed(2)+' h: '+best[1]+' mg/dL';
}});
svg.addEventListener('mouseleave', () => {{ tip.hidden=true; }});
</script></body></html>"""
    out.write_text(doc, encoding="utf-8")
    return out
