"""The per-sample result of an evaluation and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from edgewise.eval import metrics

DISTANCES = ("l0", "l1", "l2", "linf")


@dataclass
class AttackResult:
    """Per-sample outcome of :func:`edgewise.eval.run_attack` (all tensors on the CPU, length N).

    ``labels``: the true labels; ``clean_correct``: the clean prediction is the label. ``targets``: the class
    each sample was attacked toward in a targeted run, -1 in an untargeted one. ``success``: a verified
    adversarial exists (samples adversarial without attack count, at distance 0: misclassified ones, or in a
    targeted run those already predicted as their target). ``distances[name]``: distance of the returned
    adversarial, 0 for samples adversarial without attack, inf where no success.
    ``forwards`` / ``backwards``: model passes per sample spent by the attack. ``first_adversarial``: 1-based
    index of the first forward at which the sample was adversarial (0 = never). ``seconds``: wall time per
    sample (the batch's time divided by its size).

    Failure indicators (reasons an evaluation may overestimate robustness): ``verified`` is False where the
    attack changed the input but the returned point failed re-verification (NaN/inf, outside [0, 1], not
    adversarial after quantization); ``non_finite``: the model returned NaN/inf during the attack or the attack
    returned NaN/inf; ``stalled``: on a clean-correct sample, no query of the attack lowered the logit margin
    below that of its first query (a proxy measured by the counting wrapper, the same for every attack, not
    the attack's own objective, which may trade the margin against the distance).

    ``kept``: the samples whose adversarial image is held; ``adversarial`` holds their images only, in order
    (one row per True of ``kept``). By default every sample's image is kept; :func:`edgewise.eval.run_attack`
    keeps fewer when asked (``keep_adversarial``), so that memory does not grow with the number of samples.
    ``indices``: the samples' dataset indices (required: without them a result cannot be reported, reordered or
    merged). Every field but ``adversarial`` holds one value per sample (each of ``distances`` too), checked
    when the result is built.
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
    indices: torch.Tensor
    kept: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))
    targets: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    def __post_init__(self) -> None:
        if self.kept.numel() == 0 and len(self) > 0:  # not given: every image is held (files written before)
            self.kept = torch.ones(len(self), dtype=torch.bool)
        if self.targets.numel() == 0 and len(self) > 0:  # not given: untargeted (files written before)
            self.targets = torch.full((len(self),), -1, dtype=torch.long)
        # A field of another length would pair values with the wrong samples when reordered or joined.
        per_sample = {name: getattr(self, name) for name in AttackResult.__dataclass_fields__
                      if name not in ("adversarial", "distances")}
        per_sample.update({f"distances[{key!r}]": value for key, value in self.distances.items()})
        for name, value in per_sample.items():
            if value.shape != (len(self),):
                raise ValueError(f"{name} must hold one value per sample (shape ({len(self)},), as labels), got "
                                 f"shape {tuple(value.shape)}")
        held = int(self.kept.sum())
        if self.adversarial.shape[0] != held:
            raise ValueError(f"adversarial must hold one image per True of kept ({held} of {tuple(self.kept.shape)})"
                             f", got {self.adversarial.shape[0]} for {len(self)} samples")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _rows(self) -> torch.Tensor:
        """Row of ``adversarial`` holding each sample's image (meaningless where not kept)."""
        return self.kept.long().cumsum(0) - 1

    def retain(self, wanted: torch.Tensor) -> AttackResult:
        """The same results holding the adversarial images of the samples ``wanted`` (a subset of ``kept``)."""
        if wanted.shape != self.kept.shape or bool((wanted & ~self.kept).any()):
            raise ValueError("wanted must be a boolean mask of the samples' length, within kept")
        return replace(self, adversarial=self.adversarial[self._rows()[wanted]], kept=wanted.clone())

    def robust_distances(self, distance: str) -> torch.Tensor:
        """Each sample's ``distance`` as robust accuracy counts it: 0 where the clean input is misclassified.

        A misclassified sample is robust at no budget; in a targeted run its distance to the target is finite or
        inf, and counted as it is it would make robust accuracy exceed clean accuracy."""
        values = self.distances[distance]
        return torch.where(self.clean_correct, values, torch.zeros_like(values))

    def summary(self, *, distance: str = "l2", eps: tuple[float, ...] = ()) -> dict[str, Any]:
        """The numbers of the ALMA paper's tables, for ``distance``; robust accuracy at each of ``eps``."""
        values = self.distances[distance]
        attacked = self.clean_correct
        robust = self.robust_distances(distance)
        return {
            "n": len(self),
            "clean_accuracy": float(self.clean_correct.double().mean()),
            "success_rate": metrics.success_rate(self.success),
            "success_rate_on_correct": metrics.success_rate(self.success[attacked]) if attacked.any() else None,
            "distance": distance,
            "median_distance": metrics.median_distance(values),
            "median_distance_on_correct": metrics.median_distance(values[attacked]) if attacked.any() else None,
            "mean_distance": metrics.mean_distance(values, self.success),
            "robust_accuracy": {str(e): metrics.robust_accuracy(robust, e) for e in eps},
            "forwards_per_sample": float(self.forwards.double().mean()),
            "backwards_per_sample": float(self.backwards.double().mean()),
            "failed_verification": int((~self.verified).sum()),
            # Every sample without success needed an attack (targeted: misclassified ones too).
            "no_adversarial": int((~self.success & (self.forwards > 0)).sum()),
            "non_finite": int(self.non_finite.sum()),
            "stalled": int(self.stalled.sum()),
            "seconds": float(self.seconds.double().sum()),
        }

    def take(self, order: torch.Tensor) -> AttackResult:
        """The samples at positions ``order``, in that order."""
        names = [n for n in AttackResult.__dataclass_fields__ if n not in ("distances", "adversarial")]
        picked = {name: getattr(self, name)[order] for name in names}
        adversarial = self.adversarial[self._rows()[order][picked["kept"]]]
        return AttackResult(adversarial=adversarial, distances={k: v[order] for k, v in self.distances.items()},
                            **picked)

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
