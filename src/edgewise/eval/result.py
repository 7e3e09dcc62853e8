"""The per-sample result of an evaluation and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from edgewise.eval import metrics

DISTANCES = ("l0", "l1", "l2", "linf")


@dataclass
class AttackResult:
    """Per-sample outcome of :func:`edgewise.eval.run_attack` (all tensors on the CPU, length N).

    ``success``: a verified adversarial exists (samples misclassified without attack count, at distance 0).
    ``distances[name]``: distance of the returned adversarial, 0 for clean errors, inf where no success.
    ``forwards`` / ``backwards``: model passes per sample spent by the attack. ``first_adversarial``: 1-based
    index of the first forward at which the sample was adversarial (0 = never). ``seconds``: wall time per
    sample (the batch's time divided by its size).

    Failure indicators (reasons an evaluation may overestimate robustness): ``verified`` is False where the
    attack changed the input but the returned point failed re-verification (NaN/inf, outside [0, 1], not
    adversarial after quantization); ``non_finite``: the model returned NaN/inf during the attack or the attack
    returned NaN/inf; ``stalled``: on a clean-correct sample, no query of the attack lowered the logit margin
    below that of its first query (a proxy measured by the counting wrapper, the same for every attack, not
    the attack's own objective, which may trade the margin against the distance).
    """

    adversarial: torch.Tensor
    labels: torch.Tensor
    clean_prediction: torch.Tensor
    adversarial_prediction: torch.Tensor
    clean_correct: torch.Tensor
    success: torch.Tensor
    verified: torch.Tensor
    distances: dict[str, torch.Tensor]
    forwards: torch.Tensor
    backwards: torch.Tensor
    first_adversarial: torch.Tensor
    seconds: torch.Tensor
    non_finite: torch.Tensor
    stalled: torch.Tensor
    indices: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def summary(self, *, distance: str = "l2", eps: tuple[float, ...] = ()) -> dict[str, Any]:
        """The numbers of the ALMA paper's tables, for ``distance``; robust accuracy at each of ``eps``."""
        values = self.distances[distance]
        attacked = self.clean_correct
        return {
            "n": len(self),
            "clean_accuracy": float(self.clean_correct.double().mean()),
            "success_rate": metrics.success_rate(self.success),
            "success_rate_on_correct": metrics.success_rate(self.success[attacked]) if attacked.any() else None,
            "distance": distance,
            "median_distance": metrics.median_distance(values),
            "median_distance_on_correct": metrics.median_distance(values[attacked]) if attacked.any() else None,
            "mean_distance": metrics.mean_distance(values, self.success),
            "robust_accuracy": {str(e): metrics.robust_accuracy(values, e) for e in eps},
            "forwards_per_sample": float(self.forwards.double().mean()),
            "backwards_per_sample": float(self.backwards.double().mean()),
            "failed_verification": int((~self.verified).sum()),
            "no_adversarial": int((attacked & ~self.success & (self.forwards > 0)).sum()),
            "non_finite": int(self.non_finite.sum()),
            "stalled": int(self.stalled.sum()),
            "seconds": float(self.seconds.double().sum()),
        }

    def take(self, order: torch.Tensor) -> AttackResult:
        """The samples at positions ``order``, in that order."""
        names = [n for n in AttackResult.__dataclass_fields__ if n != "distances"]
        picked = {name: getattr(self, name)[order] for name in names}
        return AttackResult(distances={k: v[order] for k, v in self.distances.items()}, **picked)

    @staticmethod
    def concatenate(parts: list[AttackResult]) -> AttackResult:
        """Join per-batch results in order."""
        if not parts:
            raise ValueError("parts must hold at least one AttackResult, got none")

        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(part, name) for part in parts])

        names = [n for n in AttackResult.__dataclass_fields__ if n != "distances"]
        joined = {name: cat(name) for name in names}
        distances = {key: torch.cat([part.distances[key] for part in parts]) for key in parts[0].distances}
        return AttackResult(distances=distances, **joined)
