"""Targeted FAB against the exact minimum on random linear models: how often its one hyperplane per iteration
(f_t against the largest other logit) never reaches the target region, with and without the alternation with the
previous boundary (``targeted_rounds``), and the same on a zoo model.

    python benchmarks/fab_targeted_linear.py [--problems 300] [--classes 4] [--dim 6] [--steps 100]
                                             [--model mlp-fmnist] [--n 200] [--budget 600]

Each problem: a random ``nn.Linear(dim, classes)`` in float64, an input uniform in [0, 1]^dim, the target its least
likely class. The target region {x : f_t(x) ≥ f_j(x) for all j ≠ t} ∩ [0, 1]^dim is a polyhedron, so the minimal
ℓ∞ and ℓ1 perturbations are linear programs and the ℓ2 one a convex quadratic program (scipy's ``linprog`` and
SLSQP); problems where it is empty are skipped. Per norm: the feasible problems where ``fab(targeted=True)`` returns
no point classified as the target, and the ratio of its distance to the minimum where it does. Where two classes
are close to overtaking, the one-hyperplane iterate alternates between their two boundaries (each projection
undoes the other). Writes benchmarks/results/fab_targeted_linear.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linprog, minimize
from torch import nn

from edgewise.attacks.fab import TARGETED_ROUNDS, fab
from edgewise.data import fashion_mnist
from edgewise.distances import get as get_distance
from edgewise.eval.metrics import format_ratio, paired_ratio
from edgewise.eval.provenance import edgewise_identity
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"


def minimum(weight: np.ndarray, bias: np.ndarray, point: np.ndarray, target: int, norm: str) -> float | None:
    """The smallest ‖δ‖p with f_t(x + δ) ≥ f_j(x + δ) for every j ≠ t and x + δ in the box; None if none."""
    dim = len(point)
    rows = np.array([weight[j] - weight[target] for j in range(len(bias)) if j != target])
    offsets = np.array([bias[j] - bias[target] for j in range(len(bias)) if j != target]) + rows @ point
    box = [(-point[i], 1 - point[i]) for i in range(dim)]
    if norm == "linf":  # variables δ, s: min s, |δ_i| ≤ s
        signs = np.vstack([np.hstack([np.eye(dim), -np.ones((dim, 1))]), np.hstack([-np.eye(dim), -np.ones((dim, 1))])])
        a = np.vstack([np.hstack([rows, np.zeros((len(rows), 1))]), signs])
        b = np.concatenate([-offsets, np.zeros(2 * dim)])
        result = linprog(np.r_[np.zeros(dim), 1.0], A_ub=a, b_ub=b, bounds=[*box, (0, None)])
        return float(result.fun) if result.status == 0 else None
    if norm == "l1":  # δ = u − v, u, v ≥ 0
        result = linprog(np.ones(2 * dim), A_ub=np.hstack([rows, -rows]), b_ub=-offsets,
                         bounds=[(0, 1 - p) for p in point] + [(0, p) for p in point])
        return float(result.fun) if result.status == 0 else None
    feasible = minimum(weight, bias, point, target, "linf")
    if feasible is None:
        return None
    result = minimize(lambda d: d @ d, np.zeros(dim), jac=lambda d: 2 * d, bounds=box, method="SLSQP",
                      constraints=[{"type": "ineq", "fun": lambda d: -(rows @ d + offsets), "jac": lambda d: -rows}],
                      options={"ftol": 1e-14, "maxiter": 500})
    return float(np.sqrt(result.fun)) if result.success else None


def linear_rows(problems: int, classes: int, dim: int, steps: int, rounds: int) -> list[str]:
    """One table row per norm: feasible problems, failures and ratios of ``fab(targeted_rounds=rounds)``."""
    rows = []
    for norm in ("linf", "l2", "l1"):
        torch.manual_seed(0)
        feasible, failed, ratios = 0, 0, []
        for _ in range(problems):
            layer = nn.Linear(dim, classes).double()
            point = torch.rand(1, dim, dtype=torch.float64)
            with torch.no_grad():
                target = int(layer(point).argmin())
            best = minimum(layer.weight.detach().numpy(), layer.bias.detach().numpy(), point.numpy()[0], target,
                           norm)
            if best is None or best <= 0:
                continue
            feasible += 1
            model = nn.Sequential(layer).eval()
            adv = fab(model, point, torch.tensor([target]), norm=norm, steps=steps, targeted=True,
                      targeted_rounds=rounds)
            with torch.no_grad():
                reached = int(model(adv).argmax()) == target
            if not reached:
                failed += 1
            else:
                ratios.append(float(get_distance(norm)(point)(adv)) / best)
        summary = (f"{np.median(ratios):.4f} / {np.percentile(ratios, 95):.4f} / {max(ratios):.4f}" if ratios
                   else "–")
        rows.append(f"| {norm} | {rounds} | {feasible} | {failed} ({100 * failed / max(feasible, 1):.1f}%) | "
                    f"{summary} |")
        print(rows[-1], flush=True)
    return rows


def zoo_rows(name: str, n: int, budget: int) -> list[str]:
    """Per norm: success and median of targeted FAB with and without the repair on the correctly classified of
    Fashion-MNIST test images 8,000 .. 8,000 + n (outside the sample and the last 500 that the AttackBench reports
    use), random targets, and the paired ratio (repair / none) where both succeed."""
    model = load_model(name)
    inputs, labels = fashion_mnist("test")
    inputs, labels = inputs[8000:8000 + n], labels[8000:8000 + n]
    with torch.no_grad():
        correct = model(inputs).argmax(1) == labels
    inputs, labels = inputs[correct], labels[correct]
    targets = (labels + 1 + torch.randint(0, 9, labels.shape, generator=torch.Generator().manual_seed(0))) % 10
    rows = []
    for norm in ("linf", "l2", "l1"):
        distances = {}
        for rounds in (0, TARGETED_ROUNDS):
            adv = fab(model, inputs, targets, norm=norm, budget=budget, targeted=True, targeted_rounds=rounds)
            with torch.no_grad():
                reached = model(adv).argmax(1) == targets
            size = get_distance(norm)(inputs)(adv).double()
            distances[rounds] = torch.where(reached, size, torch.inf)
        before, after = distances[0], distances[TARGETED_ROUNDS]
        rows.append(f"| {norm} | {len(inputs)} | {100 * float(torch.isfinite(before).double().mean()):.1f}% / "
                    f"{100 * float(torch.isfinite(after).double().mean()):.1f}% | {float(before.median()):.4g} / "
                    f"{float(after.median()):.4g} | {format_ratio(paired_ratio(after, before))} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--dim", type=int, default=6)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--model", default="mlp-fmnist")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--budget", type=int, default=600)
    args = parser.parse_args()
    identity = edgewise_identity()
    lines = ["# Targeted FAB against the exact minimum on random linear models, and on a zoo model", "",
             f"Written by `python benchmarks/fab_targeted_linear.py --problems {args.problems} --classes "
             f"{args.classes} --dim {args.dim} --steps {args.steps} --model {args.model} --n {args.n} --budget "
             f"{args.budget}` (edgewise {identity['version']}, source {identity['source'][:12]}). Rounds: "
             "`targeted_rounds`, the alternations between the current and the previous boundary (0: one "
             "hyperplane alone, as before).", "",
             "Random linear problems (target = the least likely class; minimum by scipy: LP for ℓ∞ and ℓ1, SLSQP "
             "for ℓ2):", "",
             "| norm | rounds | feasible problems | failed | ratio to the minimum where found: median/p95/max |",
             "|---|---|---|---|---|"]
    for rounds in (0, TARGETED_ROUNDS):
        lines += linear_rows(args.problems, args.classes, args.dim, args.steps, rounds)
    lines += ["", f"`{args.model}`, budget {args.budget} passes per sample, random targets (success and median "
              "with rounds 0 / 5; the paired ratio rounds 5 / rounds 0 where both succeed):", "",
              "| norm | images | success | median distance | paired ratio |", "|---|---|---|---|---|"]
    lines += zoo_rows(args.model, args.n, args.budget)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fab_targeted_linear.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
