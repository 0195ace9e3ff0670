"""curves.png of the claims report: validation top-1 per epoch, mean and band over seeds, one
panel for the study's settings and one per pair of the paper's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inception_pipeline.claims_grid import planned_seeds
from inception_pipeline.io import atomic_path


def curve_band(seed_runs: dict[int, dict], split: str) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Epochs, mean and standard deviation over seeds of one split's top-1 per epoch (runs of
    different lengths, as early stopping gives, are averaged where they overlap)."""
    curves = [r[split] for r in seed_runs.values()]
    length = min(map(len, curves))
    values = np.array([c[:length] for c in curves])
    return np.arange(1, length + 1), values.mean(axis=0), values.std(axis=0)


def plot(grid: dict, runs: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    pairs = grid.get("pairs", [])
    fig = Figure(figsize=(6 * (1 + len(pairs)), 4.5))
    axes = fig.subplots(1, 1 + len(pairs), squeeze=False)[0]
    panels = [("The study's settings", [s for s in planned_seeds(grid)
                                        if s not in {n for p in pairs for n in p}
                                        or s == grid["baseline"]])]
    panels += [(f"{a} (plain) vs {b} (residual)", [a, b]) for a, b in pairs]
    for ax, (title, settings) in zip(axes, panels, strict=True):
        for i, setting in enumerate(s for s in settings if s in runs):
            epochs, mean, sd = curve_band(runs[setting], "val")
            ax.plot(epochs, mean, marker="o", markersize=3, color=f"C{i}",
                    label=f"{setting} ({len(runs[setting])} seed"
                    f"{'s' if len(runs[setting]) > 1 else ''})")
            ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
        ax.set(title=title, xlabel="epoch", ylabel="validation top-1 (mean, band: 1 sd)",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
