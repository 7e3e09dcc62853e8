"""Adversaries for training against several ℓp threats at once: AMPGD and the MAX / AVG / MSD baselines.

Each takes the clean batch and K threat models (``norms[i]``, ``eps[i]``) and returns what the outer step
trains on: inputs (N, ...), labels (N,) and per-example weights (N,), the loss being Σ weights · CE / B.

- ``ampgd``: Algorithm 3 of the min-max supplement (Wang et al., NeurIPS 2021, sec. C), problem (13):
  max over w ∈ P and δᵢ ∈ Xᵢ of ψ = Σᵢ wᵢ f_tr(θ, δᵢ; x, y) − (γ/2)‖w − 1/K‖², solved by R steps of projected
  ascent that update w and every δᵢ from the previous iterates (the two updates of sec. C):
      w_r = proj_P(w_{r−1} + β ∇w ψ),  ∇w ψ = (f_tr(δ₁), …, f_tr(δ_K)) − γ(w_{r−1} − 1/K)
      δ_{i,r} = proj_Xᵢ(δ_{i,r−1} + α εᵢ d(∇δᵢ ψ)),  ∇δᵢ ψ = wᵢ ∇ f_tr(δᵢ)
  then the outer step minimizes Σᵢ wᵢ f_tr(θ, δᵢ) (the γ term does not depend on θ). f_tr is the cross-entropy.
  Algorithm 3 writes the warm start w₁⁽ᵗ⁾ = w⁽ᵗ⁻¹⁾ for full-batch iterations; with minibatches each batch holds
  other samples, so w and δᵢ are per sample and start at 1/K and at a random point of Xᵢ for every batch.
- ``maximum`` (MAX, Tramèr & Boneh, NeurIPS 2019): per sample, the PGD adversarial of highest loss among the K.
- ``average`` (AVG, Tramèr & Boneh): all K PGD adversarials, weight 1/K each.
- ``msd`` (Maini, Wong & Kolter, ICML 2020, Algorithm 2): one PGD run whose every step tries the steepest step of
  each ℓp ball from the same gradient and keeps, per sample, the one of highest loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgewise.attacks.pgd import pgd, pgd_step, random_start
from edgewise.projections import NORMS, simplex
from edgewise.validation import check_choice, check_positive

Adversaries = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def check_threats(norms: tuple[str, ...], eps: tuple[float, ...]) -> None:
    if len(norms) < 2 or len(norms) != len(eps):
        raise ValueError(f"norms and eps must list the same K >= 2 threat models, got {norms} and {eps}")
    for norm, radius in zip(norms, eps, strict=True):
        check_choice("norms", norm, NORMS)
        check_positive("eps", radius)


@torch.no_grad()
def _losses(model: nn.Module, candidates: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """CE of each candidate batch, (B, K), in one forward."""
    logits = model(torch.cat(candidates))
    return F.cross_entropy(logits, labels.repeat(len(candidates)), reduction="none").view(len(candidates), -1).T


def _stack(candidates: list[torch.Tensor], labels: torch.Tensor, weights: torch.Tensor) -> Adversaries:
    """All K candidates as one batch, domain-major, with their (B, K) weights."""
    return torch.cat(candidates), labels.repeat(len(candidates)), weights.T.reshape(-1)


def _pick(candidates: list[torch.Tensor], choice: torch.Tensor) -> torch.Tensor:
    """Per sample, the candidate ``choice[b]``."""
    stacked = torch.stack(candidates, 1)
    return stacked[torch.arange(len(choice), device=choice.device), choice]


def ampgd(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norms: tuple[str, ...],
          eps: tuple[float, ...], generator: torch.Generator, steps: int = 10, step_size: float | None = None,
          weight_step: float = 1 / 50, gamma: float = 3.0) -> Adversaries:
    """AMPGD's inner maximization (Algorithm 3, step 4): R = ``steps`` joint ascent steps on w and the δᵢ.

    ``step_size``: α as a fraction of each εᵢ (default 2.5 / steps); ``weight_step``: β; ``gamma``: γ. The
    supplement gives no values for them on this problem: β and γ default to its ℓ∞ ensemble values (D.2).
    """
    check_threats(norms, eps)
    check_positive("steps", steps, integer=True)
    check_positive("weight_step", weight_step)
    check_positive("gamma", gamma, allow_zero=True)
    alpha = 2.5 / steps if step_size is None else step_size
    count = len(norms)
    deltas = [random_start(inputs, norm=norm, eps=radius, generator=generator)
              for norm, radius in zip(norms, eps, strict=True)]
    uniform = torch.full((len(inputs), count), 1 / count, dtype=inputs.dtype, device=inputs.device)
    weights = uniform
    for _ in range(steps):
        points = [delta.requires_grad_(True) for delta in deltas]
        logits = model(torch.cat([inputs + delta for delta in points]))
        losses = F.cross_entropy(logits, labels.repeat(count), reduction="none").view(count, -1).T  # (B, K)
        gradients = torch.autograd.grad((weights * losses).sum(), points)
        deltas = [pgd_step(delta.detach(), inputs, gradient, norm=norm, eps=radius, step_size=alpha)
                  for delta, gradient, norm, radius in zip(points, gradients, norms, eps, strict=True)]
        weights = simplex(weights + weight_step * (losses.detach() - gamma * (weights - uniform)))
    return _stack([inputs + delta for delta in deltas], labels, weights)


def _per_norm_pgd(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norms: tuple[str, ...],
                  eps: tuple[float, ...], generator: torch.Generator, steps: int,
                  step_size: float | None) -> list[torch.Tensor]:
    check_threats(norms, eps)
    return [pgd(model, inputs, labels, norm=norm, eps=radius, steps=steps, step_size=step_size, random_init=True,
                generator=generator)
            for norm, radius in zip(norms, eps, strict=True)]


def maximum(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norms: tuple[str, ...],
            eps: tuple[float, ...], generator: torch.Generator, steps: int = 10,
            step_size: float | None = None) -> Adversaries:
    """MAX: one PGD per threat model, then per sample the adversarial of highest cross-entropy."""
    candidates = _per_norm_pgd(model, inputs, labels, norms=norms, eps=eps, generator=generator, steps=steps,
                               step_size=step_size)
    worst = _pick(candidates, _losses(model, candidates, labels).argmax(1))
    return worst, labels, torch.ones(labels.shape, dtype=inputs.dtype, device=inputs.device)


def average(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norms: tuple[str, ...],
            eps: tuple[float, ...], generator: torch.Generator, steps: int = 10,
            step_size: float | None = None) -> Adversaries:
    """AVG: one PGD per threat model, all K adversarials in the loss with weight 1/K."""
    candidates = _per_norm_pgd(model, inputs, labels, norms=norms, eps=eps, generator=generator, steps=steps,
                               step_size=step_size)
    weights = torch.full((len(inputs), len(norms)), 1 / len(norms), dtype=inputs.dtype, device=inputs.device)
    return _stack(candidates, labels, weights)


def msd(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norms: tuple[str, ...],
        eps: tuple[float, ...], generator: torch.Generator, steps: int = 10,
        step_size: float | None = None) -> Adversaries:
    """MSD: δ = 0; each step, from ∇ CE(x + δ), the steepest ascent step of every ℓp ball (each projected onto its
    own ball), and per sample the candidate of highest CE becomes δ (Maini et al. 2020, Algorithm 2)."""
    check_threats(norms, eps)
    check_positive("steps", steps, integer=True)
    alpha = 2.5 / steps if step_size is None else step_size
    delta = torch.zeros_like(inputs)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(inputs + delta), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, delta)
        delta = delta.detach()
        candidates = [pgd_step(delta, inputs, gradient, norm=norm, eps=radius, step_size=alpha)
                      for norm, radius in zip(norms, eps, strict=True)]
        delta = _pick(candidates, _losses(model, [inputs + c for c in candidates], labels).argmax(1))
    return inputs + delta, labels, torch.ones(labels.shape, dtype=inputs.dtype, device=inputs.device)

