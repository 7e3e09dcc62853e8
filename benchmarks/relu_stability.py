"""How many ReLUs can take both signs in the ε-ball? The quantity ``relu_stability`` training lowers, and the one
that sizes ``edgewise.exact``'s programs (one binary variable per unstable ReLU).

    OMP_NUM_THREADS=1 python benchmarks/relu_stability.py [--models tinymlp-pgd-fmnist,tinymlp-rs-fmnist,...]

Per zoo model and radius ε: the fraction of ReLUs whose input bounds straddle 0 over the ℓ∞ ε-ball ∩ [0, 1] of
each image, by interval arithmetic (``training.stability.interval_bounds``), over Fashion-MNIST test images
5,000-5,499 (``--offset``, ``--n``), next to the model's clean and PGD-20 accuracy from its zoo metadata. Writes
benchmarks/results/relu_stability.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from edgewise.data import fashion_mnist
from edgewise.eval.report import write_text_atomic
from edgewise.models import list_models, load_model
from edgewise.training.stability import interval_bounds, unstable_fraction

MODELS = "tinymlp-fmnist,tinymlp-pgd-fmnist,tinymlp-rs-fmnist,tinycnn-fmnist,tinycnn-pgd-fmnist,tinycnn-rs-fmnist"
RADII = (0.01, 0.02, 0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--offset", type=int, default=5000)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    inputs, _ = fashion_mnist("test")
    inputs = inputs[args.offset:args.offset + args.n]
    zoo = list_models()
    lines = ["# Unstable ReLUs in the ℓ∞ ball (interval arithmetic)", "",
             f"`python benchmarks/relu_stability.py --models {args.models} --offset {args.offset} --n {args.n}`", "",
             f"Fashion-MNIST test images {args.offset}-{args.offset + args.n - 1}; fraction of ReLUs whose input "
             "bounds straddle 0 over the ε-ball ∩ [0, 1]; accuracies from the zoo metadata.", "",
             "| model | " + " | ".join(f"ε = {eps:g}" for eps in RADII) + " | clean | PGD-20 at 0.1 |",
             "|---|" + "---|" * (len(RADII) + 2)]
    for name in args.models.split(","):
        model = load_model(name)
        with torch.no_grad():
            fractions = [unstable_fraction(interval_bounds(model, inputs, eps)) for eps in RADII]
        robust = next(iter(zoo[name].get("final_robust_accuracy", {}).values()), None)
        lines.append(f"| `{name}` | " + " | ".join(f"{f:.1%}" for f in fractions)
                     + f" | {zoo[name]['clean_test_accuracy']:.1%} | "
                     + ("–" if robust is None else f"{robust:.1%}") + " |")
    out = Path(__file__).parent / "results" / "relu_stability.md"
    write_text_atomic(out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
