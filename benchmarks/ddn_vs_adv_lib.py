"""edgewise DDN vs the DDN paper authors' implementation (adv-lib 0.2.8), same model, samples and settings.

    python benchmarks/ddn_vs_adv_lib.py [--steps 100] [--n 1000]

Both run through edgewise.eval.run_attack, so both are counted and re-verified identically (8-bit outputs,
prediction recomputed). adv-lib: `pip install "setuptools<80" wheel; pip install --no-build-isolation visdom;
pip install --no-deps adv-lib==0.2.8`. Writes benchmarks/results/ddn_vs_adv_lib.{md,json}.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from edgewise.attacks import ddn
from edgewise.data import sample
from edgewise.eval import run_attack
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", default="smallcnn-fmnist")
    args = parser.parse_args()
    from adv_lib.attacks import ddn as adv_lib_ddn

    model = load_model(args.model)
    inputs, labels = sample()
    inputs, labels = inputs[: args.n], labels[: args.n]
    attacks = {
        "edgewise ddn": functools.partial(ddn, steps=args.steps),
        "adv-lib 0.2.8 ddn": functools.partial(adv_lib_ddn, steps=args.steps),
    }
    rows = {}
    for name, attack in attacks.items():
        summary = run_attack(model, inputs, labels, attack, batch_size=250, levels=256).summary(eps=(0.5, 1.0))
        rows[name] = summary
        print(f"{name}: success {summary['success_rate_on_correct']:.4f}, median ℓ2 (correct) "
              f"{summary['median_distance_on_correct']:.4f}, mean {summary['mean_distance']:.4f}, "
              f"fwd/bwd {summary['forwards_per_sample']:.0f}/{summary['backwards_per_sample']:.0f}, "
              f"{summary['seconds']:.1f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ddn_vs_adv_lib.json").write_text(json.dumps({"arguments": vars(args), "results": rows}, indent=1))
    lines = [f"DDN, {args.steps} steps, {args.model}, first {args.n} images of the shipped sample "
             f"(median over the {rows['edgewise ddn']['clean_accuracy'] * args.n:.0f} correctly classified)", "",
             "| implementation | success | median ℓ2 | mean ℓ2 | forwards | backwards | seconds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {100 * r['success_rate_on_correct']:.1f}% | {r['median_distance_on_correct']:.4f} | "
              f"{r['mean_distance']:.4f} | {r['forwards_per_sample']:.0f} | {r['backwards_per_sample']:.0f} | "
              f"{r['seconds']:.1f} |" for name, r in rows.items()]
    (RESULTS / "ddn_vs_adv_lib.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
