"""How far above the exact minimum each attack lands: per-sample ratios of attack distance to exact distance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

WITHIN = 0.01


def compare(exact: torch.Tensor, lower_bound: torch.Tensor, status: Sequence[str],
            attacks: Mapping[str, torch.Tensor], *, indices: torch.Tensor | None = None) -> dict[str, dict[str, Any]]:
    """Per attack, statistics of ``attack distance / certified lower bound`` over the samples certified optimal.

    The exact minimum lies in [lower_bound, exact] (a bracket of the solver's gap and the margin τ, see
    :func:`edgewise.exact.minimal`); dividing by the lower bound makes every ratio ≥ 1 and errs against the
    attack. Samples count where the status is "optimal" and the exact distance is finite and > 0 (clean errors,
    at 0, carry no ratio); an attack's failure (+inf) counts as ratio +inf. Returns per attack: ``n``, ``median``,
    ``mean`` (+inf if any failure), ``p95``, ``within_1pct`` (fraction with ratio ≤ 1.01), ``failures``, and
    ``below_lower_bound``: samples (any status; their ``indices``, by default their positions) where the
    attack's verified distance is below the certified lower bound by more than 10⁻⁶ relative, which would be a
    bug of the solver or of the bounds.
    """
    exact = exact.detach().double().cpu()
    lower_bound = lower_bound.detach().double().cpu()
    if exact.shape != lower_bound.shape or len(status) != len(exact):
        raise ValueError(f"exact, lower_bound and status must have one entry per sample, got {tuple(exact.shape)}, "
                         f"{tuple(lower_bound.shape)} and {len(status)}")
    names = torch.arange(len(exact)) if indices is None else torch.as_tensor(indices).cpu()
    if names.shape != exact.shape:
        raise ValueError(f"indices must have one entry per sample ({len(exact)}), got shape {tuple(names.shape)}")
    certified = torch.tensor([s == "optimal" for s in status], dtype=torch.bool)
    usable = certified & torch.isfinite(exact) & (lower_bound > 0)
    report: dict[str, dict[str, Any]] = {}
    for name, distances in attacks.items():
        distances = distances.detach().double().cpu()
        if distances.shape != exact.shape:
            raise ValueError(f"attacks[{name!r}] must have shape {tuple(exact.shape)}, got {tuple(distances.shape)}")
        ratio = distances[usable] / lower_bound[usable]
        below = distances < lower_bound * (1 - 1e-6)
        finite = ratio[torch.isfinite(ratio)]
        report[name] = {
            "n": int(usable.sum()),
            "median": float(ratio.median()) if len(ratio) else None,
            "mean": float(ratio.mean()) if len(ratio) else None,
            "p95": float(ratio.quantile(0.95)) if len(finite) == len(ratio) and len(ratio) else
            (float("inf") if len(ratio) else None),
            "within_1pct": float((ratio <= 1 + WITHIN).double().mean()) if len(ratio) else None,
            "failures": int((~torch.isfinite(ratio)).sum()),
            "below_lower_bound": [int(i) for i in names[below]],
        }
    return report


def plot_comparison(exact: torch.Tensor, status: Sequence[str], attacks: Mapping[str, torch.Tensor], path: str | Path,
                    *, title: str) -> None:
    """Scatter of each attack's distance against the exact one (certified samples), with the line y = x."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    certified = torch.tensor([s == "optimal" for s in status], dtype=torch.bool) & torch.isfinite(exact)
    figure, axes = plt.subplots(figsize=(5, 5))
    top = float(exact[certified].max()) if bool(certified.any()) else 1.0
    for name, distances in attacks.items():
        shown = certified & torch.isfinite(distances)
        axes.scatter(exact[shown].numpy(), distances[shown].double().numpy(), s=8, label=name, alpha=0.7)
        if bool(shown.any()):
            top = max(top, float(distances[shown].max()))
    axes.plot([0, top], [0, top], color="black", linewidth=0.8, label="exact")
    axes.set_xlabel("exact minimal distance (certified)")
    axes.set_ylabel("attack distance")
    axes.set_title(title)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
