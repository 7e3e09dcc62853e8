"""Metrics of the min-max paper (Wang et al., NeurIPS 2021, Tables 1-3, A3-A5) and the plot of the weights w.

All take ``fooled`` (G, K) bool — domain i of group g is misclassified on the adversarial input — and
``clean_fooled`` (G, K) — already misclassified without perturbation. Success rates count only the inputs that
the domains classify correctly when clean (an input already wrong is no success of the attack).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure

from edgewise.attacks.minmax.apgda import MinMaxResult


def accuracy(fooled: torch.Tensor) -> torch.Tensor:
    """Acc of each domain on the adversarial inputs (K,), over all groups, as the tables' Acc columns."""
    return (~fooled).double().mean(0)


def asr_all(fooled: torch.Tensor, clean_fooled: torch.Tensor) -> float:
    """ASR_all: fraction of the groups correct on every domain when clean that fool every domain at once.

    The transformation and universal tables call the same quantity ASR_gp (group success); see ``asr_gp``.
    """
    valid = ~clean_fooled.any(1)
    return float((fooled.all(1) & valid).sum().double() / valid.sum().clamp_min(1))


asr_gp = asr_all
"""ASR_gp (Tables A4/A5): the ASR_all of a group of transformations or images."""


def asr_avg(fooled: torch.Tensor, clean_fooled: torch.Tensor) -> float:
    """ASR_avg: the per-domain attack success rate (over inputs correct when clean), averaged over domains."""
    valid = ~clean_fooled
    per_domain = (fooled & valid).sum(0).double() / valid.sum(0).clamp_min(1)
    return float(per_domain.mean())


def lift(minmax: float, average: float) -> float | None:
    """Lift (↑): relative gain of min-max over the averaged strategy, (ASR_minmax − ASR_avg) / ASR_avg; None
    (undefined, ``null`` in JSON) when ASR_avg = 0."""
    return (minmax - average) / average if average > 0 else None


def plot_weights(results: Sequence[tuple[str, MinMaxResult]], domains: Sequence[str], path: str | Path, *,
                 title: str) -> None:
    """The learned domain weights: final w per domain (mean ± std over groups), with a dotted grey line at the
    uniform weight 1/K (no legend entry), and mean w along the steps."""
    figure = Figure(figsize=(11, 4))  # no pyplot: the caller's matplotlib backend and state are left alone
    bars, lines = figure.subplots(1, 2)
    width = 0.8 / max(len(results), 1)
    for index, (label, result) in enumerate(results):
        mean, std = result.weights.double().mean(0), result.weights.double().std(0, unbiased=False)
        offsets = [k + (index - (len(results) - 1) / 2) * width for k in range(len(domains))]
        bars.bar(offsets, mean.tolist(), width, yerr=std.tolist(), capsize=2, label=label)
        trajectory = result.history.double().mean(1)  # (steps + 1, K)
        for k, name in enumerate(domains):
            lines.plot(trajectory[:, k].tolist(), label=f"{label}: {name}" if len(results) > 1 else name)
    bars.axhline(1 / len(domains), color="gray", linestyle=":", linewidth=1)
    bars.set_xticks(range(len(domains)), list(domains), rotation=30)
    bars.set_ylabel("domain weight w (mean ± std over inputs)")
    bars.legend(fontsize=8)
    lines.set_xlabel("APGDA step")
    lines.set_ylabel("mean w")
    lines.legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_group_weights(inputs: torch.Tensor, result: MinMaxResult, path: str | Path, *, title: str,
                       groups: int = 6) -> None:
    """Universal perturbations as Tables A7/A8 of the supplement show them: the images of the first ``groups``
    groups (one row each) with the weight wᵢ each image received and whether the shared δ fooled it.

    ``inputs`` (N, C, H, W) in the order given to ``universal_attack`` (consecutive groups of K = weights.shape[1]);
    a large wᵢ marks the image of its group that is hardest to attack.
    """
    size = result.weights.shape[1]
    rows = min(groups, result.weights.shape[0])
    if rows == 0 or inputs.dim() != 4 or inputs.shape[0] < rows * size:
        raise ValueError(f"inputs must be images (N, C, H, W) holding {rows} groups of {size}, "
                         f"got shape {tuple(inputs.shape)}")
    figure = Figure(figsize=(1.6 * size, 1.9 * rows))
    axes = figure.subplots(rows, size, squeeze=False)
    for g in range(rows):
        for i in range(size):
            image = inputs[g * size + i].detach().cpu().double().permute(1, 2, 0)
            axis = axes[g][i]
            axis.imshow(image.squeeze(-1).numpy() if image.shape[-1] == 1 else image.numpy(), cmap="gray",
                        vmin=0, vmax=1)
            fooled = "fooled" if bool(result.fooled[g, i]) else "not fooled"
            axis.set_title(f"w = {float(result.weights[g, i]):.2f}\n{fooled}", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[g][0].set_ylabel(f"group {g + 1}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
