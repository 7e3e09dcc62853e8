"""ALMA for CIEDE2000 and SSIM on a 3-channel model: success and the true CIEDE2000 of what it returns.

    python benchmarks/alma_perceptual.py [--steps 100] [--n 1000] [--model smallcnn-rgb-fmnist]

The model is the zoo's Fashion-MNIST SmallCNN trained on gray images repeated to 3 channels; the shipped sample is
repeated the same way. Every attack runs through edgewise.eval.run_attack, which re-verifies each returned example
and measures it with edgewise.distances: "ciede2000" is the ℓ2 norm over pixels of ΔE00 as colour-science computes
it (sRGB → XYZ → Lab with white L* = 100, checked against colour-science in tests/distances), not adv-lib's
(whose Lab scaling gives white L* ≈ 9, BASELINES.md). ALMA settings: α for the step count (sec. 4), ε per
distance (Appendix F, Table 3), P2. Success and medians are over the correctly classified images among the first
n. Writes benchmarks/results/alma_perceptual.{md,json}.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from edgewise.attacks import alma
from edgewise.data import sample
from edgewise.eval import DISTANCES, run_attack
from edgewise.models import list_models, load_model

RESULTS = Path(__file__).parent / "results"
MEASURED = (*DISTANCES, "ciede2000", "ssim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--distances", default="ciede2000,ssim")
    parser.add_argument("--model", default="smallcnn-rgb-fmnist")
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()
    model = load_model(args.model)
    inputs, labels = sample()
    channels = list_models()[args.model]["in_channels"]
    inputs, labels = inputs[: args.n].expand(-1, channels, -1, -1).contiguous(), labels[: args.n]
    rows = []
    for distance in args.distances.split(","):
        attack = functools.partial(alma, distance=distance, steps=args.steps)
        result = run_attack(model, inputs, labels, attack, batch_size=args.batch_size, distances=MEASURED,
                            progress=False)
        own = result.summary(distance=distance)
        true_ciede = result.summary(distance="ciede2000")
        rows.append({"attack": f"alma-{distance}", "steps": args.steps, "n": args.n,
                     "attacked": int(result.clean_correct.sum()),
                     "success_rate_on_correct": own["success_rate_on_correct"],
                     "median_distance_on_correct": own["median_distance_on_correct"],
                     "median_ciede2000_on_correct": true_ciede["median_distance_on_correct"],
                     "median_l2_on_correct": result.summary(distance="l2")["median_distance_on_correct"],
                     "forwards_per_sample": own["forwards_per_sample"],
                     "backwards_per_sample": own["backwards_per_sample"],
                     "failed_verification": own["failed_verification"], "seconds": own["seconds"]})
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alma_perceptual.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"{args.model}, shipped sample repeated to {channels} channels; over the correctly classified images "
             f"among the first n", "",
             "| attack | steps | n (attacked) | success | median own distance | median CIEDE2000 (colour-science) | "
             "median ℓ2 | forwards / backwards | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['steps']} | {r['n']} ({r['attacked']}) | "
              f"{100 * r['success_rate_on_correct']:.1f}% | {r['median_distance_on_correct']:.4g} | "
              f"{r['median_ciede2000_on_correct']:.4f} | {r['median_l2_on_correct']:.4f} | "
              f"{r['forwards_per_sample']:.0f} / {r['backwards_per_sample']:.0f} | {r['seconds']:.0f} |"
              for r in rows]
    (RESULTS / "alma_perceptual.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
