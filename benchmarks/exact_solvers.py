"""Which solver is practical for edgewise.exact here, same programs: HiGHS (highspy) or SCIP (pyscipopt) for
ℓ∞ and ℓ1; edgewise's branch and bound over PIQP's QPs ("bnb") or SCIP for ℓ2.

For the first ``--n`` held-out test images the model classifies correctly, the question edgewise.exact asks to
certify an attack's point within the relative gap, "any adversarial within d (1 − gap)?" with d FMN's distance at
500 steps (the feasibility program, bounds tightened in that ball: LPs, for ℓ2 cone programs), is built once and
given to each solver with the same time limit; printed: the undecided ReLUs (binaries), status and seconds per
solver, as a markdown table ("infeasible" certifies FMN within the gap, "optimal" or, for ℓ2, "time_limit" before
the limit found an adversarial inside).

    OMP_NUM_THREADS=1 python benchmarks/exact_solvers.py --model tinymlp-fmnist --n 10 --time-limit 20
    OMP_NUM_THREADS=1 python benchmarks/exact_solvers.py --model tinymlp-fmnist --distance l2 --n 10 --time-limit 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgewise.attacks import fmn
from edgewise.exact.formulation import build, compute_bounds
from edgewise.exact.network import network_from_module
from edgewise.exact.solvers import ball_ranges, lp_ranges, solve
from edgewise.models import load_model
from exact_distances import held_out  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tinymlp-fmnist")
    parser.add_argument("--distance", default="linf", choices=("linf", "l1", "l2"))
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--gap", type=float, default=1e-4)
    args = parser.parse_args()
    model = load_model(args.model)
    inputs, labels, indices = held_out(4 * args.n)
    keep = model(inputs).argmax(1) == labels
    inputs, labels, indices = inputs[keep][: args.n], labels[keep][: args.n], indices[keep][: args.n]
    adversarial = fmn(model, inputs, labels, norm=args.distance, steps=500)
    order = {"linf": float("inf"), "l1": 1.0, "l2": 2.0}[args.distance]
    l2 = args.distance == "l2"
    upper = (adversarial - inputs).flatten(1).norm(p=order, dim=1)
    network = network_from_module(model, tuple(inputs.shape[1:]))
    print(f"| image | d (1 − gap) | binaries | bounds s | solver | status | seconds |\n|{'---|' * 7}")
    for i in range(len(inputs)):
        x = inputs[i].double().flatten().numpy()
        radius = float(upper[i]) * (1 - args.gap)
        started = time.perf_counter()
        bounds = compute_bounds(network, x, args.distance, radius, label=int(labels[i]), targeted=False,
                                tolerance=1e-5, lp=ball_ranges if l2 else lp_ranges)
        seconds = time.perf_counter() - started
        program, _ = build(network, x, args.distance, radius, bounds, label=int(labels[i]), targeted=False,
                           tolerance=1e-5, feasibility=True)
        for solver in ("bnb", "scip") if l2 else ("highs", "scip"):
            started = time.perf_counter()
            # ℓ2's question keeps its objective Σ (x' − x)² (its ball): stop at the first point inside.
            solution = solve(program, solver=solver, time_limit=args.time_limit, gap=0.0, first=l2)
            print(f"| {int(indices[i])} | {radius:.4f} | {int(np.sum(program.integer))} | {seconds:.2f} | {solver} | "
                  f"{solution.status} | {time.perf_counter() - started:.2f} |", flush=True)


if __name__ == "__main__":
    main()
