"""Result files and plots: ``results.json``, ``samples.jsonl``, robust-accuracy curve and example grid PNGs."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from edgewise import __version__
from edgewise.eval import metrics
from edgewise.eval.result import AttackResult


def environment(device: str, seed: int) -> dict[str, Any]:
    """What produced a result: versions, device, git commit (when run from a checkout), seed."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"edgewise": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": device, "threads": torch.get_num_threads(),
            "git_commit": commit, "seed": seed}


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _number(value: float) -> float | None:
    """JSON has no inf/nan: write them as null."""
    return value if value == value and abs(value) != float("inf") else None


def sample_records(result: AttackResult) -> list[dict[str, Any]]:
    """One typed record per sample, in order: ``label`` is the true label, ``target`` the class a targeted run
    attacked toward (null when untargeted)."""
    rows = []
    for i in range(len(result)):
        target = int(result.targets[i])
        rows.append({
            "index": int(result.indices[i]), "label": int(result.labels[i]),
            "target": None if target < 0 else target,
            "clean_prediction": int(result.clean_prediction[i]), "clean_correct": bool(result.clean_correct[i]),
            "success": bool(result.success[i]), "adversarial_prediction": int(result.adversarial_prediction[i]),
            "verified": bool(result.verified[i]), "non_finite": bool(result.non_finite[i]),
            "stalled": bool(result.stalled[i]),
            "distances": {k: _number(float(v[i])) for k, v in result.distances.items()},
            "forwards": float(result.forwards[i]), "backwards": float(result.backwards[i]),
            "first_adversarial_forward": int(result.first_adversarial[i]), "seconds": float(result.seconds[i]),
        })
    return rows


def write_results(out: Path, result: AttackResult, summary: dict[str, Any], arguments: dict[str, Any],
                  env: dict[str, Any], provenance: dict[str, Any] | None = None) -> None:
    """``results.json`` (summary, arguments, environment, and what was evaluated: ``provenance``) and
    ``samples.jsonl`` (one line per sample)."""
    out.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(summary, default=float).replace("Infinity", "null").replace("NaN", "null"))
    record = {"summary": clean, "arguments": arguments, "environment": env}
    if provenance is not None:
        record["provenance"] = provenance
    write_text_atomic(out / "results.json", json.dumps(record, indent=1) + "\n")
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in sample_records(result)))


def plot_curves(path: Path, curves: dict[str, torch.Tensor], *, distance: str, title: str,
                reference: str | None = None) -> None:
    """Robust accuracy vs budget ε, one line per attack (the ALMA paper's figures). ``reference`` names the curve
    drawn in black (the per-sample best of all attacks); the others get distinct colour and dash pairs (a
    benchmark has more attacks than a palette has colours), and the legend stands beside the axes, off the lines."""
    finite = [d[torch.isfinite(d)] for d in curves.values()]
    top = max((float(f.max()) for f in finite if f.numel()), default=1.0) * 1.05 or 1.0
    grid = torch.linspace(0, top, 201, dtype=torch.float64)
    columns = 0 if len(curves) == 1 else 1 if len(curves) <= 14 else 2
    rows = math.ceil(len(curves) / max(columns, 1))
    figure, axis = plt.subplots(figsize=(5.5 + 3.5 * columns, max(4.0, 0.8 + 0.22 * rows)))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dashes = ("-", "--", ":", "-.")
    others = [name for name in curves if name != reference]
    for index, name in enumerate([*others, *([reference] if reference in curves else [])]):
        accuracy = metrics.robust_accuracy_curve(curves[name], grid)
        auc = metrics.area_under_curve(grid, accuracy)
        style = ({"color": "black", "linestyle": "--", "linewidth": 2.0} if name == reference else
                 {"color": colours[index % len(colours)], "linestyle": dashes[index // len(colours) % len(dashes)]})
        axis.plot(grid.numpy(), 100 * accuracy.numpy(), label=f"{name} (area {auc:.3g})", **style)
    axis.set_xlabel(f"budget ε ({distance})")
    axis.set_ylabel("robust accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_xlim(0, top)
    axis.grid(alpha=0.3)
    if columns:
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", borderaxespad=0, ncol=columns)
    else:  # one curve (``edgewise attack``): its legend, with the area, fits inside the axes as before
        axis.legend()
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_examples(path: Path, inputs: Any, result: AttackResult, *, classes: Sequence[str],
                  distance: str = "l2", count: int = 8) -> None:
    """A grid: originals, adversarials (with their ``distance``, the one the attack minimized) and perturbations
    amplified to the full range, with labels/predictions, for the first ``count`` broken samples whose image the
    result holds. ``inputs``: the attacked tensor (row i = sample i) or the map-style dataset (by index)."""
    rows = result.kept.long().cumsum(0) - 1
    chosen = torch.nonzero(result.success & result.clean_correct & result.kept).flatten()[:count].tolist()
    if not chosen:
        return
    figure, axes = plt.subplots(3, len(chosen), figsize=(1.6 * len(chosen), 5.2), squeeze=False)
    for column, i in enumerate(chosen):
        original = inputs[i] if isinstance(inputs, torch.Tensor) else inputs[int(result.indices[i])][0]
        original, adversarial = original.cpu(), result.adversarial[int(rows[i])]
        delta = adversarial - original
        scale = float(delta.abs().max()) or 1.0
        amplified = 0.5 + delta / (2 * scale)
        for row, image in enumerate((original, adversarial, amplified)):
            axis = axes[row][column]
            picture = image.permute(1, 2, 0).clamp(0, 1).numpy()
            axis.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0][column].set_title(f"#{int(result.indices[i])}\n{classes[int(result.labels[i])]}", fontsize=7)
        measured = float(result.distances[distance][i]) if distance in result.distances else float("nan")
        axes[1][column].set_title(f"→ {classes[int(result.adversarial_prediction[i])]}\n{distance} {measured:.3f}",
                                  fontsize=7)
        axes[2][column].set_title(f"δ ×{0.5 / scale:.1f}", fontsize=7)
    axes[0][0].set_ylabel("original")
    axes[1][0].set_ylabel("adversarial")
    axes[2][0].set_ylabel("perturbation")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
