"""Per-step diagnostics of an attack: a ``callback`` that keeps, per step, the median over samples of what the
attack reports (ALMA: μ, ρ, learning rate, distance, best distance; C&W: c; DDN/FMN: ε, step size), written as
``trace.json`` and plotted as ``trace.png`` (the ALMA paper's Fig. 3 view of one run: μ and distance per step).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from edgewise.eval.report import plt, write_text_atomic

# Panels of the plot: (title, the state keys drawn in it). Keys of no panel are kept in trace.json only.
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("penalty (μ, ρ, c)", ("mu", "rho", "const")),
    ("distance", ("distance", "best_distance", "norm", "eps")),
    ("step size", ("lr", "step_size")),
)


class Trace:
    """``Trace()`` is an attack ``callback``: per step and key, it keeps the per-sample values of every batch.

    Only floating-point entries of the state are kept (boolean flags such as ``adversarial`` are skipped). The
    same object can serve several batches: values of the same step are pooled over batches.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[list[torch.Tensor]]] = {}

    def __call__(self, step: int, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            if not value.is_floating_point():
                continue
            per_step = self.values.setdefault(key, [])
            while len(per_step) <= step:
                per_step.append([])
            per_step[step].append(value.detach().to("cpu", torch.float64))

    def medians(self) -> dict[str, list[float | None]]:
        """Per key, per step: the median over samples of the finite values (None where no value is finite, e.g.
        the best distance before any sample has an adversarial)."""
        out: dict[str, list[float | None]] = {}
        for key, per_step in self.values.items():
            out[key] = []
            for chunks in per_step:
                values = torch.cat(chunks)
                finite = values[torch.isfinite(values)]
                out[key].append(float(finite.median()) if len(finite) else None)
        return out


def write_trace(out: Path, trace: Trace, *, title: str) -> dict[str, Any]:
    """Write ``out/trace.json`` ({"steps", "samples", "statistic", "median": {key: [per step]}}, "statistic"
    naming what the numbers are) and ``out/trace.png``."""
    medians = trace.medians()
    steps = max((len(v) for v in medians.values()), default=0)
    samples = max((sum(len(c) for c in per_step[0]) for per_step in trace.values.values()), default=0)
    record = {"steps": steps, "samples": samples, "statistic": "median over samples of the finite values",
              "median": medians}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "trace.json", json.dumps(record, indent=1) + "\n")
    panels = [(name, [k for k in keys if k in medians]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    figure, axes = plt.subplots(len(panels) or 1, 1, figsize=(7, 2.6 * max(len(panels), 1)), sharex=True,
                                squeeze=False)
    for axis, (name, keys) in zip(axes[:, 0], panels, strict=False):
        for key in keys:
            axis.plot([math.nan if v is None else v for v in medians[key]], label=key)
        shown = [v for k in keys for v in medians[k] if v is not None]
        if shown and min(shown) > 0:
            axis.set_yscale("log")
        axis.set_ylabel(name)
        axis.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(f"{title} (median over {samples} samples)")
    figure.tight_layout()
    figure.savefig(out / "trace.png", dpi=100)
    plt.close(figure)
    return record
