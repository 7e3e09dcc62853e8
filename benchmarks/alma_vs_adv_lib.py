"""edgewise ALMA vs the ALMA authors' implementation (adv-lib 0.2.8), same model, samples and settings.

    python benchmarks/alma_vs_adv_lib.py [--steps 100,1000] [--n 1000] [--distances l2,l1] [--attacks ...]
                                         [--draws 1] [--name alma_vs_adv_lib]

Every attack runs through edgewise.eval.run_attack (same counting, same re-verification). Settings shared by both
implementations: α = 0.5 at 100 steps and 0.9 at 1,000 (sec. 4), ε per distance (Appendix F), P2, μ⁽⁰⁾ = ρ⁽⁰⁾ = 1,
γ = 1.2, τ = 0.95, M = 10. adv-lib's DDN (ℓ2) and FMN are extra columns. Writes
benchmarks/results/NAME.{md,json}; finished rows are kept there and not recomputed.

The iterates of ALMA are chaotic: a change of 10⁻⁴ in ε, or a different rounding in one multiply, moves the
median of 1,000 images by up to ±0.5%, in either implementation. A single run therefore cannot tell which of two
implementations of the same algorithm finds smaller perturbations. ``--draws K`` runs both ALMAs K times, draw k
with ε·(1 + k·10⁻⁴) (draw 0 is the paper's ε), and reports, besides draw 0, the mean and the range of the K
medians: the comparison of the attacks' typical strength, with its spread.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from edgewise.attacks import alma
from edgewise.attacks.alma import INIT_DISTANCE, default_alpha
from edgewise.data import sample
from edgewise.eval import run_attack
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"


DRAW_SCALE = 1e-4  # draw k runs ALMA with ε·(1 + k·DRAW_SCALE)


def attacks_for(distance: str, steps: int, draw: int) -> dict[str, Callable[..., torch.Tensor]]:
    """The columns of one draw: both ALMAs with ε·(1 + draw·10⁻⁴); adv-lib's DDN and FMN only in draw 0."""
    from adv_lib import attacks as adv_lib

    alpha, eps = default_alpha(steps), INIT_DISTANCE[distance] * (1 + draw * DRAW_SCALE)
    table: dict[str, Callable[..., torch.Tensor]] = {
        "edgewise alma": functools.partial(alma, distance=distance, steps=steps, alpha=alpha, init_distance=eps),
        "adv-lib alma": functools.partial(adv_lib.alma, distance=distance, num_steps=steps, α=alpha,
                                          init_lr_distance=eps),
    }
    if draw == 0:
        table["adv-lib fmn"] = functools.partial(adv_lib.fmn, norm=1 if distance == "l1" else 2, steps=steps)
        if distance == "l2":
            table["adv-lib ddn"] = functools.partial(adv_lib.ddn, steps=steps)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="100,1000")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--distances", default="l2,l1")
    parser.add_argument("--model", default="smallcnn-fmnist")
    parser.add_argument("--attacks", default=None, help="comma-separated columns, e.g. 'edgewise alma,adv-lib alma'")
    parser.add_argument("--draws", type=int, default=1, help="runs of each ALMA, ε·(1 + k·1e-4) in run k")
    parser.add_argument("--name", default="alma_vs_adv_lib", help="results file name (one per concurrent run)")
    args = parser.parse_args()
    model = load_model(args.model)
    inputs, labels = sample()
    inputs, labels = inputs[: args.n], labels[: args.n]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    rows: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}
    for distance in args.distances.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            for draw in range(args.draws):
                for name, attack in attacks_for(distance, steps, draw).items():
                    if args.attacks is not None and name not in args.attacks.split(","):
                        continue
                    key = f"{distance} | {steps} | {name} | n={args.n}" + (f" | draw {draw}" if draw else "")
                    if key in rows:
                        continue
                    result = run_attack(model, inputs, labels, attack, batch_size=250, progress=False)
                    summary = result.summary(distance=distance)
                    rows[key] = {k: summary[k] for k in ("success_rate_on_correct", "median_distance_on_correct",
                                                         "forwards_per_sample", "backwards_per_sample", "seconds")}
                    print(key, rows[key], flush=True)
                    path.write_text(json.dumps(rows, indent=1))
    lines = [f"{args.model}, shipped sample (correctly classified images among the first n), median distance "
             "and success over them; draws: mean and range of the medians over the draws (ε·(1 + k·1e-4))", "",
             "| distance | steps | attack | n | success | median | forwards | backwards | seconds | draws | "
             "mean median (min-max) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        if " | draw " in key:
            continue
        distance, budget, name, n = key.split(" | ")
        medians = [r["median_distance_on_correct"]] + [
            rows[other]["median_distance_on_correct"] for other in rows if other.startswith(f"{key} | draw ")]
        lines.append(f"| {distance} | {budget} | {name} | {n[2:]} | {100 * r['success_rate_on_correct']:.1f}% | "
                     f"{r['median_distance_on_correct']:.4f} | {r['forwards_per_sample']:.0f} | "
                     f"{r['backwards_per_sample']:.0f} | {r['seconds']:.0f} | {len(medians)} | "
                     f"{statistics.mean(medians):.4f} ({min(medians):.4f}-{max(medians):.4f}) |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
