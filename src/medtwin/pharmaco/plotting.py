"""Plots of a regimen comparison (matplotlib, non-interactive backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from medtwin.pharmaco.twin import DrugComparison  # noqa: E402


def plot_comparison(comparison: DrugComparison, path: str | Path) -> Path:
    """Median and 90% prediction interval of concentration (and INR) per regimen, saved as PNG."""
    has_response = any(o.response_p50 is not None for o in comparison.outcomes)
    fig, axes = plt.subplots(2 if has_response else 1, 1, figsize=(9, 7 if has_response else 4.5), squeeze=False)
    for o in comparison.outcomes:
        label = f"{o.regimen.dose} q{o.regimen.interval_h:g}h {o.regimen.route.value} (PTA {o.probability_target:.0%})"
        ax = axes[0, 0]
        line = ax.plot(o.times_h, o.concentration_p50, label=label)[0]
        ax.fill_between(o.times_h, o.concentration_p05, o.concentration_p95, color=line.get_color(), alpha=0.2)
        if has_response and o.response_p50 is not None and o.response_p05 is not None and o.response_p95 is not None:
            ax2 = axes[1, 0]
            ax2.plot(o.times_h, o.response_p50, color=line.get_color())
            ax2.fill_between(o.times_h, o.response_p05, o.response_p95, color=line.get_color(), alpha=0.2)
            ax2.set_ylabel("INR")
            ax2.set_xlabel("time [h]")
    axes[0, 0].set_ylabel(f"{comparison.concentration_name} [mg/L]")
    axes[0, 0].set_title(f"{comparison.drug} ({comparison.model}): median and 90% prediction interval")
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("time [h]")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
