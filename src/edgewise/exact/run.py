"""``minimal`` over many samples, one file per finished sample, so an interrupted run resumes where it stopped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from edgewise.eval.provenance import check_record, edgewise_identity, fingerprint_model, fingerprint_tensor
from edgewise.eval.run import Attack, _save_atomic, run_attack
from edgewise.exact.certify import ExactResult, minimal
from edgewise.exact.compare import compare, plot_comparison

ATTACKS = {
    "linf": ("auto", "fmn-linf", "cw-linf", "pgd_minimal-linf", "apgd_minimal-linf", "adv-lib:fmn-linf",
             "foolbox:fmn-linf"),
    "l1": ("auto", "alma-l1", "fmn-l1", "cw-l1", "pgd_minimal-l1", "apgd_minimal-l1", "adv-lib:alma-l1",
           "adv-lib:fmn-l1", "foolbox:fmn-l1"),
    "l2": ("auto", "ddn", "alma-l2", "fmn-l2", "cw-l2", "pgd_minimal-l2", "apgd_minimal-l2", "adv-lib:ddn",
           "adv-lib:alma-l2", "adv-lib:fmn-l2"),
}
"""The attacks whose distances are compared with the exact ones, per norm (edgewise's portfolio ``auto`` with a
budget of two passes per step, its single attacks and other libraries')."""


def claim_exact(folder: str | Path, model: nn.Module, *, norm: str, time_limit: float, targeted: bool = False,
                label: str | None = None, **options: Any) -> None:
    """Make ``folder`` :func:`run_exact`'s folder for this code of edgewise (its source digest), model
    (fingerprint), norm, time limit, targeted and ``options``: ``folder/record.json`` of another run is a
    ValueError naming the first difference (``label`` names the folder in it). A caller that runs attacks first
    checks it before them."""
    check_record(Path(folder) / "record.json", {"edgewise": edgewise_identity(), "model": fingerprint_model(model),
                                                "norm": norm, "time_limit": time_limit, "targeted": targeted,
                                                "options": options},
                 label=label)


def run_exact(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str, time_limit: float,
              folder: str | Path, upper: torch.Tensor | None = None, indices: torch.Tensor | None = None,
              targeted: bool = False, progress: bool = True, starts: torch.Tensor | None = None,
              **options: Any) -> ExactResult:
    """:func:`minimal` sample by sample; sample ``indices[i]`` (default i) is saved as ``folder/samples/I.pt``
    and loaded instead of solved again when it was solved for the same input (sha256), label and ``upper``
    radius (another input under the same name, e.g. another --offset without indices, is solved again).
    ``starts`` and ``options`` go to :func:`minimal`.

    ``folder/record.json`` holds the run's model fingerprint, norm, time limit and options; another run in the
    same folder is a ValueError naming the first difference (:func:`claim_exact`).
    """
    folder = Path(folder)
    indices = torch.arange(len(inputs)) if indices is None else indices
    radii = torch.full((len(inputs),), math.inf, dtype=torch.float64) if upper is None else upper.double().cpu()
    claim_exact(folder, model, norm=norm, time_limit=time_limit, targeted=targeted, **options)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, Any]] = []
    for i in tqdm(range(len(inputs)), desc=f"exact {norm}", disable=not progress, leave=False):
        path = folder / "samples" / f"{int(indices[i])}.pt"
        radius = float(radii[i])
        key = {"upper": radius, "input_sha256": fingerprint_tensor(inputs[i]), "label": int(labels[i])}
        if path.is_file():
            stored = torch.load(path, weights_only=True)
            if all(stored.get(name) == value for name, value in key.items()):
                parts.append(stored)
                continue
        one = minimal(model, inputs[i : i + 1], labels[i : i + 1], norm=norm, time_limit=time_limit,
                      upper=radius, targeted=targeted, starts=None if starts is None else starts[i : i + 1],
                      **options)
        stored = {"adversarial": one.adversarial[0], "distance": float(one.distance[0]),
                  "lower_bound": float(one.lower_bound[0]), "status": one.status[0],
                  "seconds": float(one.seconds[0]), **key}
        _save_atomic(stored, path)
        parts.append(stored)
    return ExactResult(
        torch.stack([p["adversarial"] for p in parts]),
        torch.tensor([p["distance"] for p in parts], dtype=torch.float64),
        torch.tensor([p["lower_bound"] for p in parts], dtype=torch.float64),
        [p["status"] for p in parts],
        torch.tensor([p["seconds"] for p in parts], dtype=torch.float64),
        norm,
    )


def attack_distances(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attacks: dict[str, Attack], *,
                     norm: str, folder: str | Path, indices: torch.Tensor | None = None, batch_size: int = 100,
                     seed: int = 0, progress: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each attack's verified ``norm`` distance per sample (+inf where it failed), run by
    :func:`edgewise.eval.run_attack` resumably in ``folder/NAME``, and per sample the adversarial of the attack
    that came closest (the input where none succeeded): the solver's ``upper`` and ``starts``."""
    distances = {}
    best = inputs.detach().clone()
    closest = torch.full((len(inputs),), math.inf, dtype=torch.float64)
    for name, attack in attacks.items():
        result = run_attack(model, inputs, labels, attack, batch_size=batch_size, distances=(norm,), seed=seed,
                            indices=indices, resume_dir=Path(folder) / name.replace(":", "_"), progress=progress,
                            checks=False)
        distances[name] = result.distances[norm].double()
        better = distances[name] < closest
        best[better] = result.adversarial[better].to(best)
        closest = torch.minimum(closest, distances[name])
    return distances, best


def solved_folder(folder: str | Path) -> Path:
    """Where :func:`certify_against` with ``folder`` keeps :func:`run_exact`'s solved samples."""
    return Path(folder) / "exact"


def certify_against(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                    distances: dict[str, torch.Tensor], *, norm: str, time_limit: float, folder: str | Path,
                    indices: torch.Tensor | None = None, progress: bool = True, title: str = "",
                    starts: torch.Tensor | None = None, **options: Any) -> tuple[ExactResult, dict[str, Any]]:
    """The exact distances inside the attacks' best radius (:func:`run_exact` in ``folder/exact``), and the
    summary of the comparison: n, certified (optimal on a clean-correct sample), median solve seconds, largest
    relative bracket (distance − lower_bound) / distance over certified samples, and :func:`compare` per
    attack; ``folder/attack_vs_exact.png`` plots it. ``starts`` and ``options`` go to :func:`minimal`."""
    folder = Path(folder)
    upper = torch.stack([d.double().cpu() for d in distances.values()]).min(0).values
    result = run_exact(model, inputs, labels, norm=norm, time_limit=time_limit, folder=solved_folder(folder),
                       upper=upper, indices=indices, progress=progress, starts=starts, **options)
    plot_comparison(result.distance, result.status, distances, folder / "attack_vs_exact.png", title=title)
    correct = ~(upper == 0)
    certified = torch.tensor([s == "optimal" for s in result.status]) & correct
    bracket = (result.distance - result.lower_bound) / result.distance
    summary = {
        "n": len(inputs), "norm": norm, "time_limit": time_limit, "options": options,
        "clean_correct": int(correct.sum()),
        "certified": int(certified.sum()),
        "median_seconds": float(result.seconds[correct].median()) if bool(correct.any()) else None,
        "max_relative_bracket": float(bracket[certified].max()) if bool(certified.any()) else None,
        "attacks": compare(result.distance, result.lower_bound, result.status, distances, indices=indices),
    }
    return result, summary
