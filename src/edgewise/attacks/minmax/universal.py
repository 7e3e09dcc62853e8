"""Universal perturbation over K inputs: one δ that fools one model on K images at once — Wang et al. (NeurIPS
2021), sec. 3 "universal perturbation over multiple examples", supplement D.2 and G (Tables A7/A8).

The inputs are cut into consecutive groups of K; each group shares one δ and has its own weights w. Domain i of
a group is its i-th image: fᵢ(δ) = f(M(clip(xᵢ + δ, 0, 1)), yᵢ), δ ∈ {‖δ‖p ≤ ε, −1 ≤ δ ≤ 1}. Clipping each
image keeps ‖clip(xᵢ + δ) − xᵢ‖p ≤ ‖δ‖p ≤ ε. Large wᵢ marks a "robust" image (supplement G).
"""

from __future__ import annotations

from functools import partial

import torch

from edgewise.attacks.base import Callback
from edgewise.attacks.minmax.apgda import MinMaxResult, apgda, check_minmax_options, classifier_domain
from edgewise.attacks.minmax.ensemble import Model, check_models
from edgewise.projections import project_box
from edgewise.validation import check_positive


def universal_attack(
    model: Model,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    group_size: int = 5,
    norm: str = "linf",
    eps: float = 0.2,
    steps: int = 20,
    step_size: float | None = None,
    weight_step: float | None = None,
    gamma: float | None = None,
    strategy: str = "minmax",
    loss: str = "cw",
    kappa: float | None = None,
    targeted: bool = False,
    callback: Callback | None = None,
) -> MinMaxResult:
    """APGDA for a perturbation shared by each group of ``group_size`` consecutive inputs (domain i = image i).

    Args:
        model: M, inputs in [0, 1] -> logits. inputs / labels: (N, ...) and (N,), N a multiple of ``group_size``.
        group_size: K, the images per shared perturbation.
        norm / eps / steps / step_size / weight_step / gamma / strategy / loss / kappa / targeted / callback:
            as in ``ensemble_attack`` (20 steps by default, D.2).

    Returns:
        ``MinMaxResult``: ``adv`` (N, ...) in the order of ``inputs``; ``weights`` (N / K, K), ``history``
        (T + 1, N / K, K) and ``fooled`` (N / K, K) per group.
    """
    check_models([model], inputs, labels, callback, targeted=targeted, name="model")
    check_positive("group_size", group_size, integer=True)
    if inputs.shape[0] % group_size:
        raise ValueError(f"inputs must hold a multiple of group_size={group_size} samples, got {inputs.shape[0]}")
    check_minmax_options(norm=norm, eps=eps, steps=steps, strategy=strategy, loss=loss, kappa=kappa,
                         step_size=step_size, weight_step=weight_step, gamma=gamma)
    grouped = inputs.view(-1, group_size, *inputs.shape[1:])  # (G, K, ...)
    grouped_labels = labels.view(-1, group_size)

    def image(index: int, delta: torch.Tensor) -> torch.Tensor:
        return (grouped[:, index] + delta).clamp(0, 1)

    def compose(delta: torch.Tensor) -> torch.Tensor:
        return (grouped + delta.unsqueeze(1)).clamp(0, 1).view_as(inputs)

    domains = [classifier_domain(model, grouped_labels[:, i], partial(image, i), loss=loss, kappa=kappa,
                                 targeted=targeted) for i in range(group_size)]
    box = torch.ones_like(grouped[:, 0])
    return apgda(domains, torch.zeros_like(grouped[:, 0]),
                 constraint=partial(project_box, lower=-box, upper=box, norm=norm, eps=eps), compose=compose,
                 norm=norm, eps=eps, steps=steps, step_size=step_size, weight_step=weight_step, gamma=gamma,
                 strategy=strategy, callback=callback)
