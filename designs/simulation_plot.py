"""A PNG of simulated operating characteristics: P(success) and P(stop early) by scenario."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trials.io import write_bytes_atomic

if TYPE_CHECKING:
    from designs.simulation_results import SimulationResults

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {"orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7", "black": "#000000"}
# Reason, colour, hatch (the hatch tells the bars apart in greyscale too).
_STOPS = (("efficacy", OKABE_ITO["green"], ""), ("futility", OKABE_ITO["orange"], "//"),
          ("harm", OKABE_ITO["vermillion"], "xx"))


def plot_operating_characteristics(results: SimulationResults,
                                   path: str | os.PathLike[str]) -> str:
    """Write a PNG of P(success) and P(stop early) by reason for each scenario.

    Parameters
    ----------
    results
        From :func:`designs.simulation.run_simulation`.
    path
        PNG file to write (atomically; folders are created).

    Returns
    -------
    str
        Alt text describing the figure and every value shown, for reports.

    Notes
    -----
    Error bars are +/- 1.96 Monte Carlo SEs. The dashed line on the left panel is the design's
    one-sided alpha. Colours are from the Okabe-Ito palette; hatching repeats the reason.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rs = results.scenarios
    names = [r.scenario.name for r in rs]
    x = np.arange(len(rs))
    fig = Figure(figsize=(max(7.0, 1.6 * len(rs) + 4.0), 4.2), dpi=120,
                 layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    success = np.array([r.success for r in rs])
    left.bar(x, success, yerr=1.96 * np.array([r.success_se for r in rs]), capsize=4,
             color=OKABE_ITO["blue"], edgecolor="black", linewidth=0.6)
    alpha = results.spec.boundaries.design.alpha
    left.axhline(alpha, color="black", linestyle="--", linewidth=1,
                 label=f"one-sided alpha {alpha:g}")
    for xi, v in zip(x, success, strict=True):
        left.annotate(f"{v:.3f}", (xi, v), textcoords="offset points", xytext=(0, 6),
                      ha="center", fontsize=8)
    left.set(title="P(success at any look)", ylabel="probability", ylim=(0, 1.08),
             xticks=x, xticklabels=names)
    left.legend(loc="upper left", fontsize=8, frameon=False)
    width = 0.26
    for j, (reason, colour, hatch) in enumerate(_STOPS):
        name = f"stop_early_{reason}"
        right.bar(x + (j - 1) * width, [getattr(r, name) for r in rs], width,
                  yerr=1.96 * np.array([getattr(r, f"{name}_se") for r in rs]), capsize=3,
                  color=colour, hatch=hatch, edgecolor="black", linewidth=0.6, label=reason)
    right.set(title="P(stop before the last look)", ylabel="probability", ylim=(0, 1.08),
              xticks=x, xticklabels=names)
    right.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"Operating characteristics, {results.n_trials:,} simulated trials per "
                 f"scenario ({results.engine} engine)", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    write_bytes_atomic(Path(path), buffer.getvalue())
    return alt_text(results)


def alt_text(results: SimulationResults) -> str:
    """The figure in words, every plotted number included."""
    parts = [f"Two bar charts of operating characteristics from {results.n_trials:,} simulated "
             f"trials per scenario. Left: probability of success (stopping for efficacy at any "
             f"look), with the one-sided alpha of {results.spec.boundaries.design.alpha:g} as a "
             f"dashed line."]
    parts += [f"{r.scenario.name} (effect {r.scenario.effect:g}): {r.success:.3f} "
              f"(Monte Carlo SE {r.success_se:.3f})." for r in results.scenarios]
    parts.append("Right: probability of stopping before the last look for efficacy, futility "
                 "and harm.")
    parts += [f"{r.scenario.name}: efficacy {r.stop_early_efficacy:.3f}, futility "
              f"{r.stop_early_futility:.3f}, harm {r.stop_early_harm:.3f}."
              for r in results.scenarios]
    return " ".join(parts)
